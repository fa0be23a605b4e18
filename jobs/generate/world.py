"""The simulated population: stores, SKUs, people, CRM accounts and web devices.

Everything here is compact numpy state built once from the seed (about 150 bytes a
person), so 1M members fit easily and worker processes inherit it by fork. Day
generators read it and never change it: a day's rows depend only on (world, day).

Index spaces:
- actors ``0 .. n_actors-1``: members (kind 0, ``0 .. n_members-1``), web-only account
  holders (kind 1) and phone-only store guests (kind 2);
- anonymous devices that belong to nobody we know: person ``n_actors + j``;
- accounts: CRM registrations (one per member plus duplicate registrations);
- devices: web/app/mini-program installs, contiguous per owner.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from jobs.generate import reference as ref
from jobs.generate.fmt import BIG, scramble

# Activity classes (behaviour profiles) of people who could buy.
HEAVY, REGULAR, LIGHT, STOPPER, INACTIVE, BROWSER = range(6)
ACTIVITY_NAMES = ("heavy", "regular", "light", "stopper", "inactive", "browser")
ACTIVITY_WEIGHTS = (0.08, 0.25, 0.30, 0.10, 0.20, 0.07)
BASE_RATE = (0.16, 0.055, 0.016, 0.06, 0.0, 0.0)  # purchases a day
STORE_ONLY, ONLINE_ONLY, OMNI = range(3)
CHANNEL_NAMES = ("store_only", "online_only", "omnichannel")
KIND_NAMES = ("member", "web_account", "phone_guest", "anonymous_device")
SHARE_NAMES = ("primary", "phone", "email", "id_card")


@dataclass
class World:
    seed: int
    start: dt.date
    days: int
    n_members: int
    # stores
    store_ids: list[str]
    store_city: np.ndarray
    store_24h: np.ndarray
    store_encoding: list[str]  # python codec per store
    store_quote_all: np.ndarray
    store_crlf: np.ndarray
    # SKUs
    sku_text: list[str]
    sku_cat: np.ndarray
    sku_price: np.ndarray  # cents
    cat_start: np.ndarray
    cat_size: np.ndarray
    cat_pop: np.ndarray
    cat_maxqty: np.ndarray
    # actors
    kind: np.ndarray
    gender: np.ndarray
    birth: np.ndarray  # days since 1970-01-01
    surname: np.ndarray
    given1: np.ndarray
    given2: np.ndarray
    city: np.ndarray
    home_store: np.ndarray
    reg_day: np.ndarray
    reg_sec: np.ndarray
    reg_channel: np.ndarray
    activity: np.ndarray
    chan_pref: np.ndarray
    stop_day: np.ndarray
    store_rate: np.ndarray
    online_rate: np.ndarray
    browse_rate: np.ndarray
    night: np.ndarray
    hunter: np.ndarray
    lover: np.ndarray
    fav: np.ndarray
    phone: np.ndarray
    phone2: np.ndarray
    phone_day: np.ndarray
    user_num: np.ndarray
    first_dev: np.ndarray
    n_dev: np.ndarray
    first_acct: np.ndarray
    n_acct: np.ndarray
    email_kind: np.ndarray
    email_num: np.ndarray
    email_rom1: np.ndarray
    email_rom2: np.ndarray
    email_dom: np.ndarray
    idc_has: np.ndarray
    idc_seq: np.ndarray
    idc_bad: np.ndarray
    update_day: np.ndarray
    close_day: np.ndarray
    opt_bits: np.ndarray
    # accounts
    acct_owner: np.ndarray
    acct_card: np.ndarray  # 0 = no card
    acct_reg_day: np.ndarray
    acct_reg_sec: np.ndarray
    acct_upd_day: np.ndarray  # day of the version in the first snapshot (<= 0)
    acct_upd_sec: np.ndarray
    acct_channel: np.ndarray
    acct_store: np.ndarray
    acct_share: np.ndarray
    acct_num: np.ndarray
    # devices
    dev_owner: np.ndarray  # person index (actors, then anonymous device persons)
    dev_chan: np.ndarray
    dev_hi: np.ndarray
    dev_lo: np.ndarray
    dev_rate: np.ndarray
    dev_login_p: np.ndarray
    n_anon_devices: int
    corrupt_day: int
    order_salt: int
    extras: dict = field(default_factory=dict)

    @property
    def n_actors(self) -> int:
        return len(self.kind)

    @property
    def n_persons(self) -> int:
        return self.n_actors + self.n_anon_devices

    @property
    def start_epoch_day(self) -> int:
        return (self.start - dt.date(1970, 1, 1)).days

    def date(self, d: int) -> dt.date:
        return self.start + dt.timedelta(days=d)

    def active(self, d: int) -> np.ndarray:
        """Actors who can buy on day d: registered, not stopped, not closed."""
        return (self.reg_day <= d) & (d < self.stop_day)

    def phone_on(self, actors: np.ndarray, d: int) -> np.ndarray:
        """Each actor's phone number as of day d (the new one from its change day on)."""
        return np.where(self.phone_day[actors] <= d, self.phone2[actors], self.phone[actors])

    def day_salt(self, d: int) -> int:
        """Offset of day d's order numbers, so days do not repeat the same suffixes."""
        return self.order_salt + d * 104_729

    def store_rate_mult(self, d: int) -> tuple[float, float]:
        """(store, online) demand multipliers of a day: weekends and shopping festivals."""
        day = self.date(d)
        wd = day.weekday()
        store = (0.9, 0.9, 0.9, 0.95, 1.05, 1.3, 1.25)[wd]
        online = (1.0, 1.0, 1.0, 1.0, 1.05, 1.15, 1.15)[wd]
        if (day.month, day.day) in ((11, 11), (6, 18), (12, 12)):
            store, online = store * 1.5, online * 3.0
        return store, online


def _unique_phones(rng: np.random.Generator, n: int) -> np.ndarray:
    prefixes = np.array(ref.MOBILE_PREFIXES, dtype=np.int64)
    out = np.empty(0, dtype=np.int64)
    banned = {ref.PLACEHOLDER_PHONE, 13800138000}
    while len(out) < n:
        want = int((n - len(out)) * 1.05) + 16
        cand = prefixes[rng.integers(0, len(prefixes), want)] * 10**8 + rng.integers(0, 10**8, want)
        allc = np.concatenate([out, cand])
        _, first = np.unique(allc, return_index=True)
        keep = np.sort(first)
        allc = allc[keep]
        out = allc[~np.isin(allc, list(banned))]
    return out[:n]


def _ean13(rng: np.random.Generator, n: int) -> list[str]:
    bases = rng.choice(10**10, size=n, replace=False) + 69 * 10**10
    out = []
    for b in bases.tolist():
        s = str(b)
        total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(s))
        out.append(s + str((10 - total % 10) % 10))
    return out


MIN_STORES = 6  # a GB18030 till, a BOM till, a quote-all till and three 24-hour stores


def _dirty_people(
    rng: np.random.Generator,
    dup_people: np.ndarray,
    extra: np.ndarray,
    phone: np.ndarray,
    surname: np.ndarray,
    city: np.ndarray,
    is_member: np.ndarray,
) -> None:
    """The harder identity truth, in place: a quarter of the people who register more
    than once do so 4 to 8 times, and 1% of members share their phone with a family
    member (same surname and city, another person: must not merge)."""
    many = dup_people[rng.random(len(dup_people)) < 0.25]
    extra[many] = rng.integers(3, 8, len(many))
    members = np.flatnonzero(is_member & (phone > 0))
    n_families = len(members) // 100
    if n_families:
        pair = rng.choice(members, 2 * n_families, replace=False).reshape(-1, 2)
        phone[pair[:, 1]] = phone[pair[:, 0]]
        surname[pair[:, 1]] = surname[pair[:, 0]]
        city[pair[:, 1]] = city[pair[:, 0]]


def build_world(
    members: int,
    days: int,
    seed: int,
    end_date: dt.date,
    stores: int | None = None,
    dirty_identity: bool = False,
) -> World:
    """Build the population for ``members`` CRM members over ``days`` business days.

    ``stores``: how many stores (one POS file each a day); default 20 to 40 by size.
    Fewer stores mean fewer, larger files (the demo's year of history uses few).
    ``dirty_identity``: a harder identity truth (:func:`_dirty_people`; the CRM rows of
    duplicate registrations get typos, jobs/generate/crm.py). Off: the same world as ever.
    """
    dirty_rng = np.random.default_rng([seed, 0xD127]) if dirty_identity else None
    if members < 1 or days < 1:
        raise ValueError("members and days must be >= 1")
    if stores is not None and stores < MIN_STORES:
        raise ValueError(f"stores must be >= {MIN_STORES}")
    rng = np.random.default_rng([seed, 0x5EED])
    start = end_date - dt.timedelta(days=days - 1)
    n = members

    # --- stores -----------------------------------------------------------------------
    n_stores = stores or int(min(40, max(20, round(20 + n / 50_000))))
    city_w = np.array([c[3] for c in ref.CITIES])
    # Every store in a distinct-ish city first, the big cities get the extra stores.
    order = np.argsort(-city_w, kind="stable")
    store_city = np.concatenate(
        [order[: min(n_stores, 16)], rng.choice(len(city_w), n_stores, p=city_w / city_w.sum())]
    )[:n_stores].astype(np.int16)
    perm = rng.permutation(n_stores)
    gb_store, bom_store, quote_store = int(perm[0]), int(perm[1]), int(perm[2])
    store_24h = np.zeros(n_stores, dtype=bool)
    store_24h[perm[3:6]] = True
    store_encoding = ["utf-8"] * n_stores
    store_encoding[gb_store] = "gb18030"
    store_encoding[bom_store] = "utf-8-sig"
    store_quote_all = np.zeros(n_stores, dtype=bool)
    store_quote_all[quote_store] = True
    store_crlf = np.zeros(n_stores, dtype=bool)
    store_crlf[gb_store] = True  # the old Windows tills
    store_ids = [f"S{i + 1:03d}" for i in range(n_stores)]

    # --- SKUs -------------------------------------------------------------------------
    cat_size = np.array([c[1] for c in ref.CATEGORIES], dtype=np.int64)
    cat_start = np.concatenate([[0], np.cumsum(cat_size)[:-1]]).astype(np.int64)
    n_sku = int(cat_size.sum())
    sku_cat = np.repeat(np.arange(len(cat_size)), cat_size).astype(np.int8)
    lo = np.log(np.array([c[2] for c in ref.CATEGORIES]))[sku_cat]
    hi = np.log(np.array([c[3] for c in ref.CATEGORIES]))[sku_cat]
    price_yuan = np.exp(lo + (hi - lo) * rng.random(n_sku) ** 1.6)
    tail = rng.choice(np.array([90, 0, 50, 80, 99]), n_sku, p=[0.4, 0.25, 0.15, 0.1, 0.1])
    sku_price = (np.floor(price_yuan).astype(np.int64) * 100 + tail).astype(np.int64)
    sku_text = _ean13(rng, n_sku)
    cat_pop = np.array([c[4] for c in ref.CATEGORIES])
    cat_pop = cat_pop / cat_pop.sum()
    cat_maxqty = np.array([c[5] for c in ref.CATEGORIES], dtype=np.int64)

    # --- actors -----------------------------------------------------------------------
    n_web_guests = int(round(0.05 * n))
    n_phone_guests = int(round(0.03 * n))
    na = n + n_web_guests + n_phone_guests
    kind = np.concatenate(
        [np.zeros(n, np.int8), np.ones(n_web_guests, np.int8), np.full(n_phone_guests, 2, np.int8)]
    )
    is_member = kind == 0
    gender = (rng.random(na) < 0.56).astype(np.int8)  # 1 = female: most members are women
    age_years = np.clip(rng.normal(36, 11, na), 18, 78)
    birth = (
        np.int64((end_date - dt.date(1970, 1, 1)).days) - (age_years * 365.25).astype(np.int64)
    ).astype(np.int32)
    surnames, sw, male, female = ref.name_pools()
    surname = rng.choice(len(surnames), na, p=np.array(sw)).astype(np.int16)
    pool_len = np.where(gender == 1, len(female), len(male))
    given1 = (rng.random(na) * pool_len).astype(np.int16)
    given2 = np.where(rng.random(na) < 0.55, (rng.random(na) * pool_len).astype(np.int16), -1)
    given2 = given2.astype(np.int16)

    activity = rng.choice(6, na, p=np.array(ACTIVITY_WEIGHTS)).astype(np.int8)
    chan_pref = rng.choice(3, na, p=[0.55, 0.15, 0.30]).astype(np.int8)
    chan_pref[kind == 1] = ONLINE_ONLY
    chan_pref[kind == 2] = STORE_ONLY
    activity[(kind == 2) & (activity >= INACTIVE)] = LIGHT
    night = rng.random(na) < 0.07
    hunter = rng.random(na) < 0.10
    lover = rng.random(na) < 0.12
    fav = rng.choice(len(cat_pop), na, p=cat_pop).astype(np.int8)

    home_store = rng.integers(0, n_stores, na).astype(np.int16)
    stores_24h = np.flatnonzero(store_24h)
    home_store[night] = stores_24h[rng.integers(0, len(stores_24h), int(night.sum()))]
    city = store_city[home_store].astype(np.int16)
    moved = rng.random(na) < 0.08
    city[moved] = rng.integers(0, len(ref.CITIES), int(moved.sum()))

    # Registration: ~3 years of history before the window, a stream of new members inside it.
    f_new = min(0.3, 0.05 + days * 0.0012)
    new = rng.random(na) < f_new
    reg_day = np.where(
        new,
        rng.integers(0, days, na),
        -(1 + np.floor(1094 * rng.random(na) ** 1.4)).astype(np.int64),
    ).astype(np.int32)
    reg_channel = rng.choice(4, na, p=np.array(ref.REGISTER_WEIGHTS)).astype(np.int8)
    reg_channel[kind == 1] = np.where(rng.random(int((kind == 1).sum())) < 0.6, 2, 3)
    store_hours = rng.integers(9 * 3600, 21 * 3600 + 1800, na)
    any_hours = rng.integers(7 * 3600, 86400, na)
    reg_sec = np.where(reg_channel == 0, store_hours, any_hours).astype(np.int32)

    has_web = (kind == 1) | (
        is_member
        & (
            (chan_pref != STORE_ONLY)
            | (activity == BROWSER)
            | (rng.random(na) < np.where(activity == INACTIVE, 0.3, 0.35))
            | (reg_channel != 0)
        )
    )
    has_web &= kind != 2
    # Browsers must be able to browse; people who buy online need an account.
    activity[(activity == BROWSER) & ~has_web] = INACTIVE

    spread = np.exp(rng.normal(0, 0.35, na))
    base = np.array(BASE_RATE)[activity] * spread
    base[kind == 2] = 0.03 * spread[kind == 2]
    store_share = np.array([1.0, 0.0, 0.6])[chan_pref]
    online_share = np.array([0.0, 0.8, 0.45])[chan_pref]
    store_rate = base * store_share
    online_rate = np.where(has_web, base * online_share, 0.0)
    browse_rate = np.where(
        has_web,
        np.select(
            [activity == HEAVY, activity == BROWSER, activity == STOPPER],
            [0.021, 0.12, 0.015],
            0.0085,
        )
        * spread,
        0.0,
    )

    stop_day = np.full(na, BIG, dtype=np.int32)
    stoppers = activity == STOPPER
    # From 5% of the period on: over a year and more of history some stop early enough
    # to be churned (no purchase in 365 days) by its end.
    lo_d, hi_d = max(1, int(days * 0.05)), max(2, int(days * 0.45))
    stop_day[stoppers] = rng.integers(lo_d, hi_d + 1, int(stoppers.sum()))

    # Store registrations usually happen at a checkout: the new member buys right then.
    # (handled by the POS generator from reg_day/reg_channel.)

    phones_needed = na + int(0.05 * n) + 8
    phone_pool = _unique_phones(rng, phones_needed)
    phone = np.zeros(na, dtype=np.int64)
    phone[is_member | (kind == 2)] = phone_pool[: int((is_member | (kind == 2)).sum())]
    used = int((is_member | (kind == 2)).sum())
    phone2 = np.zeros(na, dtype=np.int64)
    phone_day = np.full(na, BIG, dtype=np.int32)
    update_day = np.full(na, BIG, dtype=np.int32)
    close_day = np.full(na, BIG, dtype=np.int32)

    pre = np.flatnonzero(is_member & (reg_day < 0))
    buyers_pre = pre[(activity[pre] <= LIGHT) & (chan_pref[pre] != ONLINE_ONLY)]
    buyers_pre = buyers_pre[~night[buyers_pre]]
    taken = np.zeros(na, dtype=bool)
    if days >= 2 and len(buyers_pre):
        k = min(len(buyers_pre), max(1, int(round(0.015 * n))))
        changers = rng.choice(buyers_pre, k, replace=False)
        phone2[changers] = phone_pool[used : used + k]
        used += k
        phone_day[changers] = rng.integers(1, max(2, days - 1), k)
        taken[changers] = True
        free = pre[~taken[pre]]
        k = min(len(free), int(round(0.03 * n)))
        updaters = rng.choice(free, k, replace=False)
        update_day[updaters] = rng.integers(1, days, k)
        free = pre[~taken[pre] & (update_day[pre] == BIG)]
        k = min(len(free), max(1, int(round(0.003 * n))))
        closers = rng.choice(free, k, replace=False)
        close_day[closers] = rng.integers(1, days, k)
        taken[closers] = True
        stop_day = np.minimum(stop_day, close_day)

    # Contact details.
    email_kind = np.where(rng.random(na) < 0.6, rng.integers(0, 2, na), -1).astype(np.int8)
    email_num = np.where(
        email_kind == 0, rng.integers(10**5, 4 * 10**9, na), rng.integers(0, 10**4, na)
    ).astype(np.int64)
    rom_last, rom_first = ref.romanized_pools()
    email_rom1 = rng.integers(0, len(rom_last), na).astype(np.int16)
    email_rom2 = rng.integers(0, len(rom_first), na).astype(np.int16)
    email_dom = rng.integers(1, len(ref.EMAIL_DOMAINS), na).astype(np.int8)
    idc_has = is_member & (rng.random(na) < 0.4)
    idc_seq = rng.integers(0, 500, na).astype(np.int16)  # 3rd digit's parity set from gender
    idc_bad = idc_has & (rng.random(na) < 0.02)
    opt_bits = rng.integers(0, 8, na).astype(np.int8)

    # --- CRM accounts: one per member, plus duplicate registrations of the same person --
    dup_candidates = pre[~taken[pre]]
    n_dup = min(len(dup_candidates), max(1, int(round(0.03 * n)))) if n >= 20 else 0
    dup_people = np.sort(rng.choice(dup_candidates, n_dup, replace=False)) if n_dup else pre[:0]
    extra = np.zeros(na, dtype=np.int64)
    extra[dup_people] = np.where(rng.random(n_dup) < 0.7, 1, 2)
    if dirty_rng is not None:
        _dirty_people(dirty_rng, dup_people, extra, phone, surname, city, is_member)
    n_acct = np.where(is_member, 1 + extra, 0).astype(np.int8)
    first_acct = (np.cumsum(n_acct) - n_acct).astype(np.int32)
    n_accounts = int(n_acct.sum())
    acct_owner = np.repeat(np.arange(na, dtype=np.int32), n_acct)
    rank = np.arange(n_accounts) - first_acct[acct_owner]
    acct_share = np.zeros(n_accounts, dtype=np.int8)
    dups = rank > 0
    acct_share[dups] = rng.choice([1, 2, 3], int(dups.sum()), p=[0.4, 0.3, 0.3])
    # A duplicate sharing an email or ID card needs the primary to have a usable one.
    shares_email = np.zeros(na, dtype=bool)
    shares_email[acct_owner[acct_share == 2]] = True
    email_kind[shares_email & (email_kind < 0)] = 1
    shares_idc = np.zeros(na, dtype=bool)
    shares_idc[acct_owner[acct_share == 3]] = True
    idc_has |= shares_idc
    idc_bad &= ~shares_idc

    acct_reg_day = reg_day[acct_owner].copy()
    acct_reg_sec = reg_sec[acct_owner].copy()
    # A duplicate registration happens some time after the first one (maybe in the window).
    acct_reg_day[dups] = rng.integers(acct_reg_day[dups] + 1, days)
    acct_reg_sec[dups] = rng.integers(8 * 3600, 86400, int(dups.sum()))
    acct_channel = reg_channel[acct_owner].copy()
    acct_channel[dups] = rng.choice(4, int(dups.sum()), p=np.array(ref.REGISTER_WEIGHTS))
    acct_store = home_store[acct_owner].copy()
    acct_store[dups] = rng.integers(0, n_stores, int(dups.sum()))
    has_card = np.where(acct_channel == 0, True, rng.random(n_accounts) < np.where(dups, 0.5, 0.6))
    acct_num = (
        scramble(np.arange(n_accounts), 2_718_281_831, 123457 + seed % 1000, 9 * 10**9) + 10**9
    )
    acct_card = np.where(
        has_card, scramble(np.arange(n_accounts), 7_368_787, 31337 + seed % 977, 10**8), 0
    ).astype(np.int64)
    acct_card[has_card & (acct_card == 0)] = 10**8 - 1  # 0 means "no card"
    # The first snapshot shows each pre-window account's latest change before the window.
    span = np.maximum(0, -acct_reg_day - 1)
    acct_upd_day = np.where(
        acct_reg_day < 0, acct_reg_day + (rng.random(n_accounts) * (span + 1)).astype(np.int64), 0
    ).astype(np.int32)
    acct_upd_day = np.where(acct_reg_day >= 0, acct_reg_day, acct_upd_day).astype(np.int32)
    acct_upd_sec = np.where(
        acct_upd_day == acct_reg_day,
        np.minimum(acct_reg_sec + rng.integers(0, 1800, n_accounts), 86399),
        rng.integers(8 * 3600, 86400, n_accounts),
    ).astype(np.int32)

    # --- web devices --------------------------------------------------------------------
    user_num = np.where(
        has_web, scramble(np.arange(na), 2_718_281_831, 99991 + seed % 1013, 9 * 10**8) + 10**8, 0
    ).astype(np.int64)
    n_dev = np.where(has_web, rng.choice([1, 2, 3], na, p=[0.55, 0.35, 0.10]), 0).astype(np.int8)
    n_anon = int(round(0.35 * n)) + 1
    first_dev = (np.cumsum(n_dev) - n_dev).astype(np.int32)
    n_owned = int(n_dev.sum())
    dev_owner = np.concatenate(
        [np.repeat(np.arange(na, dtype=np.int32), n_dev), na + np.arange(n_anon, dtype=np.int32)]
    )
    n_devices = len(dev_owner)
    owned = np.arange(n_devices) < n_owned
    dev_rank = np.zeros(n_devices, dtype=np.int64)
    dev_rank[:n_owned] = np.arange(n_owned) - first_dev[dev_owner[:n_owned]]
    owner_ndev = np.ones(n_devices)
    owner_ndev[:n_owned] = n_dev[dev_owner[:n_owned]]
    share = np.where(
        dev_rank == 0, np.where(owner_ndev > 1, 0.7, 1.0), 0.3 / (owner_ndev - 1 + 1e-9)
    )
    dev_rate = np.zeros(n_devices)
    dev_rate[:n_owned] = browse_rate[dev_owner[:n_owned]] * share[:n_owned]
    dev_rate[n_owned:] = 0.0085 * np.exp(rng.normal(0, 0.6, n_anon))
    dev_login_p = np.zeros(n_devices)
    dev_login_p[:n_owned] = np.where(dev_rank[:n_owned] == 0, 0.45, 0.2)
    browsers = np.zeros(n_devices, dtype=bool)
    browsers[:n_owned] = activity[dev_owner[:n_owned]] == BROWSER
    dev_login_p[browsers] = 0.7
    dev_login_p[~owned] = 0.0
    dev_chan = rng.choice(3, n_devices, p=np.array(ref.WEB_CHANNEL_WEIGHTS)).astype(np.int8)
    dev_hi = rng.integers(0, 2**63, n_devices, dtype=np.uint64)
    dev_lo = rng.integers(0, 2**63, n_devices, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    corrupt_day = int(days // 2)
    order_salt = int(rng.integers(0, 10**6))

    # Rates only feed Poisson draws: single precision halves their footprint.
    store_rate, online_rate, browse_rate = (
        store_rate.astype(np.float32),
        online_rate.astype(np.float32),
        browse_rate.astype(np.float32),
    )
    dev_rate, dev_login_p = dev_rate.astype(np.float32), dev_login_p.astype(np.float32)

    return World(
        seed=seed,
        start=start,
        days=days,
        n_members=n,
        store_ids=store_ids,
        store_city=store_city,
        store_24h=store_24h,
        store_encoding=store_encoding,
        store_quote_all=store_quote_all,
        store_crlf=store_crlf,
        sku_text=sku_text,
        sku_cat=sku_cat,
        sku_price=sku_price,
        cat_start=cat_start,
        cat_size=cat_size,
        cat_pop=cat_pop,
        cat_maxqty=cat_maxqty,
        kind=kind,
        gender=gender,
        birth=birth,
        surname=surname,
        given1=given1,
        given2=given2,
        city=city,
        home_store=home_store,
        reg_day=reg_day,
        reg_sec=reg_sec,
        reg_channel=reg_channel,
        activity=activity,
        chan_pref=chan_pref,
        stop_day=stop_day,
        store_rate=store_rate,
        online_rate=online_rate,
        browse_rate=browse_rate,
        night=night,
        hunter=hunter,
        lover=lover,
        fav=fav,
        phone=phone,
        phone2=phone2,
        phone_day=phone_day,
        user_num=user_num,
        first_dev=first_dev,
        n_dev=n_dev,
        first_acct=first_acct,
        n_acct=n_acct,
        email_kind=email_kind,
        email_num=email_num,
        email_rom1=email_rom1,
        email_rom2=email_rom2,
        email_dom=email_dom,
        idc_has=idc_has,
        idc_seq=idc_seq,
        idc_bad=idc_bad,
        update_day=update_day,
        close_day=close_day,
        opt_bits=opt_bits,
        acct_owner=acct_owner,
        acct_card=acct_card,
        acct_reg_day=acct_reg_day,
        acct_reg_sec=acct_reg_sec,
        acct_upd_day=acct_upd_day,
        acct_upd_sec=acct_upd_sec,
        acct_channel=acct_channel,
        acct_store=acct_store,
        acct_share=acct_share,
        acct_num=acct_num,
        dev_owner=dev_owner,
        dev_chan=dev_chan,
        dev_hi=dev_hi,
        dev_lo=dev_lo,
        dev_rate=dev_rate,
        dev_login_p=dev_login_p,
        n_anon_devices=n_anon,
        corrupt_day=corrupt_day,
        order_salt=order_salt,
        extras={
            "gb18030_store": store_ids[gb_store],
            "bom_store": store_ids[bom_store],
            "quote_all_store": store_ids[quote_store],
            "stores_24h": [store_ids[i] for i in np.flatnonzero(store_24h)],
            "dirty_identity": dirty_identity,
        },
    )
