"""One business day of web/app behaviour: ``web/<date>/events_<YYYYMMDD>_<part>.jsonl[.gz]``.

Sessions are drawn vectorised per device (browsing) and per account holder
(purchases, sign-ups); events are rendered per session. Delivery is at-least-once:
some events come again later in the same file, in a later part of the same day, or
(returned to the caller, which writes them) in a later day's ``resend`` file.
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from jobs.generate import reference as ref
from jobs.generate.fmt import scramble, times_of_day, user_id_text, uuid_text, ymd
from jobs.generate.world import BROWSER, World

BAD_REASONS = (
    "invalid_json",
    "event_id_required",
    "event_ts_invalid",
    "anonymous_id_required",
    "event_type_invalid",
    "channel_invalid",
    "order_id_required_for_purchase",
    "revenue_invalid",
)
DUP_RATE = 0.008
BAD_RATE = 0.005
EVENTS_PER_PART = 150_000
CORRUPT_PART = "9999"
RESEND_PART = "resend"

_WEB_HOURS = np.array(
    [2, 1, 0.5, 0.3, 0.2, 0.3, 1, 2, 3, 4, 4, 5, 6, 5, 4, 4, 5, 6, 7, 8, 10, 11, 9, 5], float
)
_WEB_HOURS /= _WEB_HOURS.sum()
_NIGHT_HOURS = np.zeros(24)
_NIGHT_HOURS[[21, 22, 23, 0, 1, 2, 3, 4]] = [4, 6, 7, 6, 4, 3, 2, 1]
_NIGHT_HOURS /= _NIGHT_HOURS.sum()


def events_file_name(day_ymd: str, part: str, gz: bool) -> str:
    return f"events_{day_ymd}_{part}.jsonl" + (".gz" if gz else "")


def web_order_id(day_ymd: str, seq: int, salt: int) -> str:
    return f"W{day_ymd}{scramble(seq, 3_367_941, salt, 10_000_000):07d}"


@dataclass
class WebDay:
    files: list[str]
    lines: int  # lines in readable files (bad lines and redeliveries included)
    events: int  # distinct valid events
    purchases: int
    corrupt_file: str | None
    corrupt_lines: int
    bad: list[tuple[str, str, int | None, str]]
    dups: list[tuple[str, str, int]]  # (event_id, file, line_no)
    resend: list[tuple[int, bytes, str]]  # (target day, line, event_id)
    devices_seen: np.ndarray
    devices_linked: np.ndarray
    users_seen: np.ndarray
    line_counts: dict[str, int] = field(default_factory=dict)


class _Cat:
    """Weighted category/SKU draws with the stdlib RNG (cheap per call in Python loops)."""

    def __init__(self, w: World, rnd: random.Random) -> None:
        self.w = w
        self.rnd = rnd
        self.cum = list(itertools.accumulate(w.cat_pop.tolist()))
        self.start = w.cat_start.tolist()
        self.size = w.cat_size.tolist()
        self.price = w.sku_price.tolist()

    def draw(self, fav: int, p_fav: float) -> tuple[int, int]:
        rnd = self.rnd
        if fav >= 0 and rnd.random() < p_fav:
            cat = fav
        else:
            cat = min(bisect.bisect(self.cum, rnd.random() * self.cum[-1]), len(self.cum) - 1)
        return cat, self.start[cat] + int(rnd.random() * self.size[cat])


def _ts_text(date_s: str, prev_s: str, sec: int, style: float) -> str:
    """Mostly ``+08:00``; some exporters add milliseconds, some write the instant in UTC."""
    tod = times_of_day()
    if style < 0.95:
        return f"{date_s}T{tod[sec]}+08:00"
    if style < 0.98:
        return f"{date_s}T{tod[sec]}.{int(style * 1e6) % 1000:03d}+08:00"
    utc = sec - 8 * 3600  # the same instant written in UTC
    if utc < 0:
        return f"{prev_s}T{tod[utc + 86400]}Z"
    return f"{date_s}T{tod[utc]}Z"


def generate_web_day(w: World, d: int, out: Path) -> WebDay:
    day = w.date(d)
    day_ymd = ymd(day)
    date_s = day.isoformat()
    prev_s = w.date(d - 1).isoformat()
    rng = np.random.default_rng([w.seed, d, 2])
    rnd = random.Random(w.seed * 1_000_003 + d * 7919 + 2)
    _, online_mult = w.store_rate_mult(d)
    na = w.n_actors

    # --- sessions ----------------------------------------------------------------------
    dev_owner = w.dev_owner
    owned = dev_owner < na
    owner_c = np.where(owned, dev_owner, 0)
    can_browse = ~owned | ((w.reg_day[owner_c] <= d) & (w.close_day[owner_c] > d))
    n_browse = rng.poisson(w.dev_rate * can_browse * (0.5 + 0.5 * online_mult))
    browse_dev = np.repeat(np.arange(len(dev_owner), dtype=np.int64), n_browse)
    login = rng.random(len(browse_dev)) < w.dev_login_p[browse_dev]

    buy_counts = rng.poisson(w.online_rate * w.active(d) * online_mult)
    buyers = np.repeat(np.arange(na, dtype=np.int64), buy_counts)
    other = np.where(
        rng.random(len(buyers)) < 0.2, rng.integers(0, 3, len(buyers)) % w.n_dev[buyers], 0
    )
    buy_dev = w.first_dev[buyers] + other

    signers = np.flatnonzero((w.reg_day == d) & (w.reg_channel != 0) & (w.user_num > 0))
    sign_dev = w.first_dev[signers].astype(np.int64)

    s_dev = np.concatenate([browse_dev, buy_dev, sign_dev])
    s_kind = np.concatenate(
        [np.zeros(len(browse_dev), np.int8), np.ones(len(buy_dev), np.int8),
         np.full(len(sign_dev), 2, np.int8)]
    )  # fmt: skip
    s_login = np.concatenate([login, np.ones(len(buy_dev), bool), np.zeros(len(sign_dev), bool)])
    s_owner = dev_owner[s_dev]
    s_owned = s_owner < na
    so = np.where(s_owned, s_owner, 0)
    night = s_owned & w.night[so] & (rng.random(len(s_dev)) < 0.8)
    hour = np.where(
        night,
        rng.choice(24, len(s_dev), p=_NIGHT_HOURS),
        rng.choice(24, len(s_dev), p=_WEB_HOURS),
    )
    start = hour * 3600 + rng.integers(0, 3600, len(s_dev))
    start = np.where(s_kind == 2, w.reg_sec[so], start)
    start = np.minimum(start, 86400 - 1800)
    n_sessions = len(s_dev)
    parts_n = int(min(16, max(2, -(-n_sessions * 5 // EVENTS_PER_PART))))
    s_part = rng.integers(0, parts_n, n_sessions)

    # --- events ------------------------------------------------------------------------
    cat = _Cat(w, rnd)
    tod = times_of_day()
    salt = w.day_salt(d)
    # Per-session attributes gathered vectorised: the Python loop below only formats.
    owner_l = s_owner.tolist()
    dev_l, kind_l, login_l = s_dev.tolist(), s_kind.tolist(), s_login.tolist()
    start_l, part_l = start.tolist(), s_part.tolist()
    anon_l = [
        uuid_text(h, lo)
        for h, lo in zip(w.dev_hi[s_dev].tolist(), w.dev_lo[s_dev].tolist(), strict=True)
    ]
    chan_l = [ref.WEB_CHANNELS[c] for c in w.dev_chan[s_dev].tolist()]
    user_nums = np.where(s_owned, w.user_num[so], 0).tolist()
    fav_l = np.where(s_owned, w.fav[so], -1).tolist()
    pfav_l = np.where(s_owned, np.where(w.lover[so], 0.8, 0.35), 0.0).tolist()
    hunter_l = (s_owned & w.hunter[so]).tolist()
    browser_l = (s_owned & (w.activity[so] == BROWSER)).tolist()
    parts: list[list[tuple[int, int, bytes, str]]] = [[] for _ in range(parts_n)]
    devices_linked: list[int] = []
    users_seen: list[int] = []
    n_events = 0
    n_purchases = 0
    order_seq = 0
    cats = ref.CATEGORY_NAMES
    sku_text = w.sku_text
    sku_cat = w.sku_cat.tolist()
    random_ = rnd.random
    for s in range(n_sessions):
        anon = anon_l[s]
        channel = chan_l[s]
        kind = kind_l[s]
        fav, p_fav, hunter = fav_l[s], pfav_l[s], hunter_l[s]
        user = user_id_text(user_nums[s]) if user_nums[s] else None
        steps: list[str] = ["page_view"]
        if kind == 2:
            steps += ["signup"] + ["product_view"] * int(random_() * 4)
        else:
            if login_l[s] and user:
                steps.append("login")
            if random_() < 0.45:
                steps.append("search")
            k = 1 + int(random_() * 4) + (2 + int(random_() * 5) if browser_l[s] else 0)
            steps += ["product_view"] * k
            if kind == 1:
                steps += ["add_to_cart"] * (1 + int(random_() * 3)) + ["checkout", "purchase"]
            else:
                if random_() < 0.15:
                    steps.append("add_to_cart")
                if random_() < 0.03:
                    steps.append("share")
                if random_() < 0.02:
                    steps.append("review")
        sec = start_l[s]
        logged = False
        cart: list[int] = []
        last_sku, last_cat = -1, -1
        for step in steps:
            sec = min(sec + 2 + int(random_() * 79), 86399)
            if step in ("login", "signup"):
                logged = True
            ev: dict = {
                "event_id": f"{rnd.getrandbits(96):024x}",
                "event_ts": _ts_text(date_s, prev_s, sec, random_()),
                "anonymous_id": anon,
            }
            if logged:
                ev["user_id"] = user
            ev["event_type"] = step
            ev["channel"] = channel
            if step == "product_view":
                c, sku = cat.draw(fav, p_fav)
                last_sku, last_cat = sku, c
                ev["sku"] = sku_text[sku]
                ev["category"] = cats[c]
                ev["properties"] = {"page_url": f"/item/{sku_text[sku]}"}
            elif step == "add_to_cart":
                if last_sku < 0:
                    last_cat, last_sku = cat.draw(fav, p_fav)
                cart.append(last_sku)
                ev["sku"] = sku_text[last_sku]
                ev["category"] = cats[last_cat]
                ev["properties"] = {"qty": 1}
            elif step == "search":
                c, _ = cat.draw(fav, p_fav)
                terms = ref.SEARCH_TERMS[cats[c]]
                ev["properties"] = {"query": terms[int(rnd.random() * len(terms))]}
            elif step == "page_view":
                props = {"page_url": ref.PAGES[int(rnd.random() * len(ref.PAGES))]}
                referrer = ref.REFERRERS[int(rnd.random() * len(ref.REFERRERS))]
                if referrer:
                    props["referrer"] = referrer
                if rnd.random() < 0.2:
                    props["utm_source"] = ref.UTM_SOURCES[int(rnd.random() * len(ref.UTM_SOURCES))]
                    props["utm_campaign"] = "member_day"
                ev["properties"] = props
            elif step == "purchase":
                items = cart or [cat.draw(fav, p_fav)[1]]
                total = sum(cat.price[i] for i in items)
                if hunter or rnd.random() < 0.2:
                    total -= int(total * (0.35 if hunter else 0.1))
                ev["sku"] = sku_text[items[0]]
                ev["category"] = cats[sku_cat[items[0]]]
                ev["order_id"] = web_order_id(day_ymd, order_seq, salt)
                order_seq += 1
                # Some exporters send money as a string: both are decimals by contract.
                ev["revenue"] = total / 100 if rnd.random() < 0.85 else f"{total / 100:.2f}"
                ev["properties"] = {"items": len(items), "pay": "wechat"}
                n_purchases += 1
            # orjson's result keeps a 4 KiB buffer; a compact copy keeps a busy day in memory.
            line = memoryview(orjson.dumps(ev)).tobytes()
            parts[part_l[s]].append((sec, n_events, line, ev["event_id"]))
            n_events += 1
        if logged:
            devices_linked.append(dev_l[s])
            users_seen.append(owner_l[s])

    # Sort each part by time (exports are time-ordered), then plant the mess.
    for p in parts:
        p.sort(key=lambda t: (t[0], t[1]))
    base: list[list[tuple[bytes, str | None, str | None]]] = [
        [(t[2], None, t[3]) for t in p] for p in parts
    ]
    del parts  # the lines live on in ``base``; a busy day holds a few hundred MB otherwise
    # extras[part] = list of (insert before index, tiebreak, line, tag, event_id)
    extras: list[list[tuple[int, int, bytes, str | None, str | None]]] = [[] for _ in base]
    resend: list[tuple[int, bytes, str]] = []
    nonempty = [i for i, p in enumerate(base) if p]
    tie = itertools.count()

    n_dup = max(3, int(rng.binomial(n_events, DUP_RATE))) if n_events else 0
    for k in range(n_dup):
        sp = nonempty[int(rnd.random() * len(nonempty))]
        si = int(rnd.random() * len(base[sp]))
        line, _, eid = base[sp][si]
        copies = 2 if rnd.random() < 0.1 else 1
        for c in range(copies):
            mode = k % 3 if k < 3 and c == 0 else rnd.choices((0, 1, 2), (0.4, 0.4, 0.2))[0]
            later_parts = [i for i in range(sp + 1, parts_n)]
            if mode == 2 and d + 1 < w.days:
                target = d + 1 + int(rnd.random() * min(3, w.days - d - 1))
                resend.append((target, line, eid))
            elif mode >= 1 and later_parts:
                tp = later_parts[int(rnd.random() * len(later_parts))]
                at = int(rnd.random() * (len(base[tp]) + 1))
                extras[tp].append((at, next(tie), line, "dup", eid))
            else:
                at = si + 1 + int(rnd.random() * (len(base[sp]) - si))
                extras[sp].append((at, next(tie), line, "dup", eid))

    n_min = -(-len(BAD_REASONS) // w.days)
    n_bad = max(n_min, int(rng.binomial(n_events, BAD_RATE))) if n_events else 0
    for k in range(n_bad):
        reason = BAD_REASONS[(d * n_min + k) % len(BAD_REASONS)]
        sp = nonempty[int(rnd.random() * len(nonempty))]
        donor = orjson.loads(base[sp][int(rnd.random() * len(base[sp]))][0])
        sec = int(rnd.random() * 86000)
        line = _bad_line(rnd, reason, donor, date_s, tod[sec], day_ymd, salt, k, sku_text)
        at = int(rnd.random() * (len(base[sp]) + 1))
        extras[sp].append((at, next(tie), line, reason, None))

    # --- write -------------------------------------------------------------------------
    folder = out / "web" / date_s
    folder.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    bad: list[tuple[str, str, int | None, str]] = []
    dups: list[tuple[str, str, int]] = []
    line_counts: dict[str, int] = {}
    total_lines = 0
    for p in range(parts_n):
        gz = p % 2 == 1
        name = events_file_name(day_ymd, f"{p + 1:04d}", gz)
        rel = f"web/{date_s}/{name}"
        merged: list[bytes] = []
        ex = sorted(extras[p])
        j = 0
        rows = base[p]
        for i in range(len(rows) + 1):
            while j < len(ex) and ex[j][0] == i:
                _, _, line, tag, eid = ex[j]
                merged.append(line)
                if tag == "dup":
                    dups.append((eid, rel, len(merged)))
                else:
                    bad.append(("web", rel, len(merged), tag))
                j += 1
            if i < len(rows):
                merged.append(rows[i][0])
        data = b"\n".join(merged) + (b"\n" if merged else b"")
        if gz:
            data = gzip.compress(data, compresslevel=1, mtime=0)
        (folder / name).write_bytes(data)
        files.append(rel)
        line_counts[rel] = len(merged)
        total_lines += len(merged)

    corrupt_file, corrupt_lines = None, 0
    if d == w.corrupt_day:
        # An exporter retry cut off mid-upload: re-sent events in a truncated gzip.
        name = events_file_name(day_ymd, CORRUPT_PART, True)
        copies = [t[0] for p in base for t in p][:200] or [b'{"event_id":"x"}']
        full = gzip.compress(b"\n".join(copies) + b"\n", compresslevel=6, mtime=0)
        (folder / name).write_bytes(full[: max(12, len(full) * 11 // 20)])
        corrupt_file = f"web/{date_s}/{name}"
        corrupt_lines = len(copies)
        files.append(corrupt_file)
        bad.append(("web", corrupt_file, None, "file_unreadable"))

    return WebDay(
        files=files,
        lines=total_lines,
        events=n_events,
        purchases=n_purchases,
        corrupt_file=corrupt_file,
        corrupt_lines=corrupt_lines,
        bad=bad,
        dups=dups,
        resend=resend,
        devices_seen=np.unique(s_dev),
        devices_linked=np.unique(np.array(devices_linked, dtype=np.int64)),
        users_seen=np.unique(np.array(users_seen, dtype=np.int64)),
        line_counts=line_counts,
    )


def _bad_line(
    rnd: random.Random,
    reason: str,
    donor: dict,
    date_s: str,
    time_s: str,
    day_ymd: str,
    salt: int,
    k: int,
    sku_text: list[str],
) -> bytes:
    """A fresh event on a device seen today that breaks exactly ``reason``."""
    ev: dict = {
        "event_id": f"{rnd.getrandbits(96):024x}",
        "event_ts": f"{date_s}T{time_s}+08:00",
        "anonymous_id": donor["anonymous_id"],
        "event_type": "page_view",
        "channel": donor["channel"],
        "properties": {"page_url": "/home"},
    }
    pick = rnd.randrange(1000)
    if reason == "invalid_json":
        text = orjson.dumps(ev).decode()
        return text[: 10 + rnd.randrange(len(text) - 12)].encode()
    if reason == "event_id_required":
        if pick % 3 == 0:
            del ev["event_id"]
        else:
            ev["event_id"] = "" if pick % 3 == 1 else None
    elif reason == "event_ts_invalid":
        ev["event_ts"] = (
            "yesterday",
            "2026-13-45T25:61:00+08:00",
            f"{date_s} {time_s}",
            1_763_727_303_000,
        )[pick % 4]
    elif reason == "anonymous_id_required":
        if pick % 2:
            del ev["anonymous_id"]
        else:
            ev["anonymous_id"] = ""
    elif reason == "event_type_invalid":
        ev["event_type"] = ("pageview", "click", "PAGE_VIEW", "浏览")[pick % 4]
    elif reason == "channel_invalid":
        ev["channel"] = ("ios", "h5", "pc", "APP")[pick % 4]
    elif reason in ("order_id_required_for_purchase", "revenue_invalid"):
        sku = rnd.randrange(len(sku_text))
        ev["event_type"] = "purchase"
        ev["sku"] = sku_text[sku]
        ev["order_id"] = web_order_id(day_ymd, 9_000_000 + k, salt)
        ev["revenue"] = round(rnd.uniform(10, 500), 2)
        ev.pop("properties")
        if reason == "order_id_required_for_purchase":
            del ev["order_id"]
        else:
            choice = pick % 4
            if choice == 0:
                del ev["revenue"]
            else:
                ev["revenue"] = ("abc", -12.5, "¥99.00")[choice - 1]
    else:  # pragma: no cover
        raise ValueError(reason)
    return orjson.dumps(ev)
