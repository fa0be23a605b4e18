"""One business day of POS exports: ``pos/<date>/pos_<store>_<YYYYMMDD>.csv`` per store.

Orders are drawn vectorised from the world's purchase rates (numpy), then rendered
row by row into per-store CSV text. Returns refer to SALE orders of earlier days:
the "returnable" sales of a day come from their own RNG stream (seed, day, 7), so
the worker of a later day can regenerate exactly the sale it returns without any
state shared between processes.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from jobs.generate import reference as ref
from jobs.generate.fmt import (
    PHONE_STYLE_WEIGHTS,
    card_text,
    money,
    phone_text,
    times_of_day,
    ymd,
)
from jobs.generate.world import ONLINE_ONLY, STOPPER, World

COLUMNS = (
    "order_id",
    "line_no",
    "store_id",
    "order_ts",
    "txn_type",
    "ref_order_id",
    "member_card_no",
    "phone",
    "sku",
    "category",
    "qty",
    "unit_price",
    "discount",
    "amount",
    "payment_method",
    "points_earned",
    "points_redeemed",
)
BAD_REASONS = (
    "order_id_required",
    "line_no_invalid",
    "store_id_required",
    "order_ts_invalid",
    "txn_type_invalid",
    "ref_order_id_invalid",
    "sku_required",
    "category_required",
    "qty_invalid",
    "unit_price_invalid",
    "discount_invalid",
    "amount_invalid",
    "amount_mismatch",
    "payment_method_invalid",
    "points_invalid",
    "wrong_field_count",
)
RETURNABLE_SHARE = 0.05  # of member store purchases, later (partly) returned
ANON_PER_MEMBER_ORDER = 0.62  # ~60% of POS sales carry a card or phone
PLACEHOLDER_SHARE = 0.22  # of anonymous sales where the cashier keys the placeholder
MAX_RETURN_LAG = 14
BAD_RATE = 0.005

# Order sequence ranges inside one day (scrambled into 7-digit order numbers).
SEQ_RETURNABLE = 4_000_000
SEQ_RETURN = 5_000_000
SEQ_RETURN_STRIDE = 200_000
SEQ_BAD = 9_000_000

# Hour-of-day profiles (store-local).
_DAY_HOURS = np.zeros(24)
_DAY_HOURS[8:22] = [2, 4, 5, 6, 7, 6, 5, 5, 6, 7, 8, 8, 6, 3]
_DAY_HOURS /= _DAY_HOURS.sum()
_NIGHT_HOURS = np.zeros(24)
_NIGHT_HOURS[[21, 22, 23, 0, 1, 2, 3, 4]] = [5, 6, 6, 4, 3, 2, 1, 1]
_NIGHT_HOURS /= _NIGHT_HOURS.sum()


def order_id(day: dt.date, seq: int, salt: int) -> str:
    return f"{_ymd(day)}{(seq * 3_367_941 + salt) % 10_000_000:07d}"


@lru_cache(maxsize=512)
def _ymd(day: dt.date) -> str:
    return ymd(day)


def pos_file_name(store_id: str, day: dt.date) -> str:
    return f"pos_{store_id}_{ymd(day)}.csv"


@dataclass
class Orders:
    """Grain: one order. ``buyer`` is an actor index or -1 (anonymous)."""

    buyer: np.ndarray
    store: np.ndarray
    sec: np.ndarray
    ident: np.ndarray  # 0 none, 1 card, 2 phone, 3 card+phone, 4 placeholder phone
    acct: np.ndarray  # account whose card is shown, -1
    phone: np.ndarray  # canonical number shown, 0
    phone_new: np.ndarray  # True when it is the buyer's changed (second) number
    pay: np.ndarray
    seq: np.ndarray
    redeem: np.ndarray  # points redeemed on the order (0 none)


@dataclass
class Lines:
    """Grain: one order line. ``order`` indexes the matching Orders arrays."""

    order: np.ndarray
    line_no: np.ndarray
    sku: np.ndarray
    qty: np.ndarray
    price: np.ndarray
    disc: np.ndarray


def _times(rng: np.random.Generator, night: np.ndarray) -> np.ndarray:
    n = len(night)
    hours = np.where(
        night & (rng.random(n) < 0.8),
        rng.choice(24, n, p=_NIGHT_HOURS),
        rng.choice(24, n, p=_DAY_HOURS),
    )
    return (hours * 3600 + rng.integers(0, 3600, n)).astype(np.int64)


def _orders_for(
    w: World, rng: np.random.Generator, d: int, buyers: np.ndarray, seq0: int
) -> Orders:
    """Orders of known buyers (actors) and anonymous ones (-1) on day d."""
    n = len(buyers)
    known = buyers >= 0
    b = np.where(known, buyers, 0)
    n_stores = len(w.store_ids)
    home = rng.random(n) < 0.75
    night = known & w.night[b]
    stores_24h = np.flatnonzero(w.store_24h)
    other = np.where(
        night, stores_24h[rng.integers(0, len(stores_24h), n)], rng.integers(0, n_stores, n)
    )
    store = np.where(known & home, w.home_store[b], other).astype(np.int64)
    sec = _times(rng, night)

    # How the customer identifies: card, phone, both; strangers: nothing or the placeholder.
    is_member = known & (w.kind[b] == 0)
    prim = w.first_acct[b]
    has_card = is_member & (w.acct_card[np.where(is_member, prim, 0)] > 0)
    r = rng.random(n)
    ident = np.where(
        is_member,
        np.where(has_card, np.where(r < 0.6, 1, np.where(r < 0.9, 2, 3)), 2),
        np.where(known, 2, np.where(r < PLACEHOLDER_SHARE, 4, 0)),
    ).astype(np.int8)
    acct = np.where(ident % 2 == 1, prim, -1)
    # People with a second registration sometimes show the other card.
    second = prim + 1
    alt = (
        (acct >= 0)
        & (w.n_acct[b] > 1)
        & (rng.random(n) < 0.25)
        & (w.acct_card[np.minimum(second, len(w.acct_card) - 1)] > 0)
        & (w.acct_reg_day[np.minimum(second, len(w.acct_card) - 1)] <= d)
    )
    acct = np.where(alt, second, acct)
    phone_now = w.phone_on(b, d)
    shows_phone = (ident == 2) | (ident == 3)
    phone = np.where(shows_phone, phone_now, np.where(ident == 4, ref.PLACEHOLDER_PHONE, 0))
    phone_new = shows_phone & (w.phone_day[b] <= d)
    pay = rng.choice(len(ref.PAYMENT_METHODS), n, p=np.array(ref.PAYMENT_WEIGHTS)).astype(np.int8)
    redeem = np.where(
        (ident >= 1) & (ident <= 3) & (rng.random(n) < 0.05), rng.integers(1, 21, n) * 100, 0
    )
    return Orders(
        buyer=buyers.astype(np.int64),
        store=store,
        sec=sec,
        ident=ident,
        acct=acct.astype(np.int64),
        phone=phone.astype(np.int64),
        phone_new=phone_new,
        pay=pay,
        seq=seq0 + np.arange(n, dtype=np.int64),
        redeem=redeem.astype(np.int64),
    )


def _lines_for(w: World, rng: np.random.Generator, orders: Orders) -> Lines:
    n_orders = len(orders.buyer)
    n_lines = np.minimum(rng.geometric(0.42, n_orders), 12)
    order = np.repeat(np.arange(n_orders), n_lines)
    first = np.cumsum(n_lines) - n_lines
    line_no = np.arange(len(order)) - first[order] + 1
    buyer = orders.buyer[order]
    known = buyer >= 0
    b = np.where(known, buyer, 0)
    n = len(order)
    p_fav = np.where(known, np.where(w.lover[b], 0.82, 0.3), 0.0)
    cat = np.where(
        rng.random(n) < p_fav, w.fav[b], rng.choice(len(w.cat_pop), n, p=w.cat_pop)
    ).astype(np.int64)
    sku = w.cat_start[cat] + (rng.random(n) * w.cat_size[cat]).astype(np.int64)
    price = w.sku_price[sku]
    qty = np.where(rng.random(n) < 0.7, 1, 1 + rng.integers(1, w.cat_maxqty[cat] + 1))
    hunter = known & w.hunter[b]
    pct = np.where(
        hunter,
        np.where(rng.random(n) < 0.85, rng.uniform(0.30, 0.60, n), 0.0),
        np.where(rng.random(n) < 0.25, rng.uniform(0.05, 0.25, n), 0.0),
    )
    disc = np.round(qty * price * pct).astype(np.int64)
    return Lines(order=order, line_no=line_no, sku=sku, qty=qty, price=price, disc=disc)


def _buyers(w: World, rng: np.random.Generator, d: int, share: float) -> np.ndarray:
    store_mult, _ = w.store_rate_mult(d)
    lam = w.store_rate * w.active(d) * (store_mult * share)
    counts = rng.poisson(lam)
    return np.repeat(np.arange(len(lam), dtype=np.int64), counts)


@dataclass
class Returnable:
    """Sales of day d that come back later, with how they come back."""

    orders: Orders
    lines: Lines
    lag: np.ndarray  # per order: days until the return
    ret_sec: np.ndarray  # per order: time of the return
    ret_line: np.ndarray  # per line: returned quantity (0 = line kept)


_RETURNABLE: OrderedDict[tuple[int, ...], Returnable] = OrderedDict()


def returnable(w: World, d: int) -> Returnable:
    """The returnable sales of day d (cached: the next 14 days' workers all need them)."""
    key = (w.seed, w.n_members, w.days, w.start.toordinal(), d)  # never id(): ids get reused
    hit = _RETURNABLE.get(key)
    if hit is None:
        hit = _make_returnable(w, d)
        _RETURNABLE[key] = hit
        while len(_RETURNABLE) > 2 * MAX_RETURN_LAG + 2:
            _RETURNABLE.popitem(last=False)
    return hit


def _make_returnable(w: World, d: int) -> Returnable:
    rng = np.random.default_rng([w.seed, d, 7])
    buyers = _buyers(w, rng, d, RETURNABLE_SHARE)
    buyers = buyers[w.kind[buyers] == 0]  # members keep receipts; good enough
    orders = _orders_for(w, rng, d, buyers, SEQ_RETURNABLE)
    lines = _lines_for(w, rng, orders)
    n = len(buyers)
    lag = np.minimum(rng.geometric(0.3, n), MAX_RETURN_LAG)  # most returns come soon
    ret_sec = rng.integers(10 * 3600, 21 * 3600, n)
    whole = rng.random(n) < 0.3
    # Keep one line (the first) unless the whole order comes back.
    pick = lines.line_no == 1
    back = whole[lines.order] | pick
    part_qty = np.maximum(1, (lines.qty * rng.random(len(lines.qty))).astype(np.int64) + 1)
    part_qty = np.minimum(part_qty, lines.qty)
    ret_line = np.where(back, np.where(rng.random(len(lines.qty)) < 0.8, lines.qty, part_qty), 0)
    return Returnable(orders, lines, lag, ret_sec, ret_line)


def _bad_fields(
    rng: np.random.Generator, reason: str, w: World, day: dt.date, store: int, seq: int
) -> list[str]:
    """One anonymous single-line order that breaks exactly ``reason``."""
    tod = times_of_day()
    sku = int(rng.integers(0, len(w.sku_text)))
    cat = ref.CATEGORY_NAMES[int(w.sku_cat[sku])]
    price = int(w.sku_price[sku])
    qty = int(rng.integers(1, 3))
    amount = qty * price
    f = {
        "order_id": order_id(day, seq, w.day_salt((day - w.start).days)),
        "line_no": "1",
        "store_id": w.store_ids[store],
        "order_ts": f"{day.isoformat()} {tod[int(rng.integers(9 * 3600, 21 * 3600))]}",
        "txn_type": "SALE",
        "ref_order_id": "",
        "member_card_no": "",
        "phone": "",
        "sku": w.sku_text[sku],
        "category": cat,
        "qty": str(qty),
        "unit_price": money(price),
        "discount": "",
        "amount": money(amount),
        "payment_method": ref.PAYMENT_METHODS[int(rng.integers(0, 5))],
        "points_earned": "",
        "points_redeemed": "",
    }
    pick = int(rng.integers(0, 1000))
    if reason == "order_id_required":
        f["order_id"] = ""
    elif reason == "line_no_invalid":
        f["line_no"] = ("0", "-1", "1.5", "A1")[pick % 4]
    elif reason == "store_id_required":
        f["store_id"] = ""
    elif reason == "order_ts_invalid":
        f["order_ts"] = (
            "2026-13-45 25:61:00",
            "yesterday",
            f"{day.strftime('%Y/%m/%d')} 10:15",
            "",
        )[pick % 4]
    elif reason == "txn_type_invalid":
        f["txn_type"] = ("VOID", "EXCHANGE", "sale", "退货")[pick % 4]
    elif reason == "ref_order_id_invalid":
        f["txn_type"] = "RETURN"
    elif reason == "sku_required":
        f["sku"] = ""
    elif reason == "category_required":
        f["category"] = ""
    elif reason == "qty_invalid":
        f["qty"], f["amount"] = "0", "0.00"
    elif reason == "unit_price_invalid":
        f["unit_price"] = ("N/A", f"¥{money(price)}", "")[pick % 3]
    elif reason == "discount_invalid":
        f["discount"] = ("10%", "-5.00", "八折")[pick % 3]
        if f["discount"] == "-5.00":  # keep qty*price-discount == amount: only the sign is bad
            f["amount"] = money(amount + 500)
    elif reason == "amount_invalid":
        f["amount"] = ("#VALUE!", "", f"¥{money(amount)}")[pick % 3]
    elif reason == "amount_mismatch":
        f["amount"] = money(amount + int(rng.integers(1, 50)) * 100)
    elif reason == "payment_method_invalid":
        f["payment_method"] = ("unionpay", "现金", "credit", "WeChat Pay")[pick % 4]
    elif reason == "points_invalid":
        f["points_earned"] = ("-5", "12.5", "abc")[pick % 3]
    elif reason == "wrong_field_count":
        keep = len(COLUMNS) - int(rng.integers(1, 6))
        return [f[c] for c in COLUMNS[:keep]]
    else:  # pragma: no cover - guarded by BAD_REASONS
        raise ValueError(reason)
    return [f[c] for c in COLUMNS]


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass
class PosDay:
    files: list[str]
    lines: int  # data rows written (bad ones included)
    orders: int
    returns: int
    bad: list[tuple[str, str, int | None, str]]  # (source, file, line_no, reason)
    cards: np.ndarray  # accounts whose card appears on a valid row
    phones_old: np.ndarray  # actors whose first number appears on a valid row
    phones_new: np.ndarray  # actors whose changed number appears on a valid row
    placeholder_lines: int
    # Member SALE orders and the points the till printed (the loyalty ledger books them):
    # order id, store index, second of day, account, card shown, points earned, redeemed.
    member_sales: dict[str, np.ndarray | list[str]] = field(default_factory=dict)


def _member_sales(
    w: World, orders: Orders, lines: Lines, amount: np.ndarray, ids: list[str]
) -> dict[str, np.ndarray | list[str]]:
    """The SALE orders of members that identified at the till (grain: one order), with the
    points the till printed on their lines (one point per whole yuan)."""
    n = len(orders.buyer)
    earned = np.bincount(lines.order, weights=amount // 100, minlength=n).astype(np.int64)
    buyer = np.maximum(orders.buyer, 0)
    member = (orders.buyer >= 0) & (orders.ident >= 1) & (orders.ident <= 3) & (w.kind[buyer] == 0)
    pick = np.flatnonzero(member)
    acct = np.where(orders.acct >= 0, orders.acct, w.first_acct[buyer])
    return {
        "order_id": [ids[i] for i in pick.tolist()],
        "store": orders.store[pick],
        "sec": orders.sec[pick],
        "acct": acct[pick].astype(np.int64),
        "card_shown": (orders.ident[pick] % 2) == 1,
        "earned": earned[pick],
        "redeemed": orders.redeem[pick],
    }


def _concat_sales(parts: list[dict[str, np.ndarray | list[str]]]) -> dict:
    """The order groups' member sales as one set of columns."""
    return {
        k: [v for p in parts for v in p[k]]
        if k == "order_id"
        else np.concatenate([p[k] for p in parts])
        for k in parts[0]
    }


def generate_pos_day(w: World, d: int, out: Path) -> PosDay:
    """Write every store's file for day d; return what was written (for truth)."""
    day = w.date(d)
    rng = np.random.default_rng([w.seed, d, 1])
    salt = w.day_salt(d)

    # Members and guests, then strangers (no identity or the placeholder phone).
    known = _buyers(w, rng, d, 1.0 - RETURNABLE_SHARE)
    fresh = np.flatnonzero(
        (w.reg_day == d)
        & (w.reg_channel == 0)
        & (w.kind == 0)
        & (w.activity <= STOPPER)
        & (w.chan_pref != ONLINE_ONLY)
    )
    fresh = fresh[rng.random(len(fresh)) < 0.7]  # signing up at the till, buying right then
    known = np.sort(np.concatenate([known, fresh]))
    n_anon = int(rng.poisson(len(known) / (1 - RETURNABLE_SHARE) * ANON_PER_MEMBER_ORDER))
    buyers = np.concatenate([known, np.full(n_anon, -1, dtype=np.int64)])
    main = _orders_for(w, rng, d, buyers, 0)
    main_lines = _lines_for(w, rng, main)
    sale = returnable(w, d)

    # Rows as (store, sec, seq, line_no, text fields) gathered from each order group.
    tod = times_of_day()
    date_s = day.isoformat()
    rows_store: list[np.ndarray] = []
    rows_key: list[np.ndarray] = []
    rows_text: list[list[str]] = []
    store_ids = w.store_ids
    sku_text = w.sku_text
    sku_cat = w.sku_cat.tolist()
    cat_names = ref.CATEGORY_NAMES
    pay_names = ref.PAYMENT_METHODS
    acct_card = w.acct_card.tolist()
    cards: list[np.ndarray] = []
    phones_old: list[np.ndarray] = []
    phones_new: list[np.ndarray] = []
    sales: list[dict[str, np.ndarray | list[str]]] = []

    def render(
        orders: Orders,
        lines: Lines,
        txn: str,
        ref_ids: list[str] | None,
        secs: np.ndarray,
        qty: np.ndarray,
        disc: np.ndarray,
    ) -> None:
        o = lines.order
        r = np.random.default_rng([w.seed, d, 11, len(rows_text)])
        n = len(o)
        amount = qty * lines.price - disc
        # One spelling per order: the till prints the same keyed value on every line.
        n_orders = len(orders.buyer)
        card_style = r.random(n_orders)[o]
        phone_style = r.choice(len(PHONE_STYLE_WEIGHTS), n_orders, p=PHONE_STYLE_WEIGHTS)[o]
        zero_style = r.random(n)
        ids = [order_id(day, s, salt) for s in orders.seq.tolist()]
        stores = orders.store[o]
        idents = orders.ident[o].tolist()
        accts = orders.acct[o].tolist()
        phones = orders.phone[o].tolist()
        pays = orders.pay[o].tolist()
        redeem = np.where(lines.line_no == 1, orders.redeem[o], 0).tolist()
        member_sale = txn == "SALE"
        line_nos = lines.line_no.tolist()
        stores_l = stores.tolist()
        secs_l = secs.tolist()
        qty_l = qty.tolist()
        price_l = lines.price.tolist()
        sku_l = lines.sku.tolist()
        disc_l = disc.tolist()
        amount_l = amount.tolist()
        card_style_l = card_style.tolist()
        phone_style_l = phone_style.tolist()
        zero_style_l = zero_style.tolist()
        text: list[str] = []
        for i, oi in enumerate(o.tolist()):
            ident = idents[i]
            card = ""
            if ident == 1 or ident == 3:
                card = card_text(acct_card[accts[i]])
                cs = card_style_l[i]
                if cs < 0.05:
                    card = card.lower()
                elif cs < 0.08:
                    card = f" {card} "
            phone = phone_text(phones[i], phone_style_l[i]) if ident >= 2 else ""
            if ident == 4 and phone_style_l[i] > 1:
                phone = "13800000000"
            dc = disc_l[i]
            if dc:
                disc_s = money(dc)
            else:
                zs = zero_style_l[i]
                disc_s = "" if zs < 0.5 else ("0.00" if zs < 0.9 else "0")
            amt = amount_l[i]
            identified = 1 <= ident <= 3
            sku = sku_l[i]
            # Generated values never hold a comma or quote, so no CSV quoting is needed here.
            text.append(
                f"{ids[oi]},{line_nos[i]},{store_ids[stores_l[i]]},{date_s} {tod[secs_l[oi]]},"
                f"{txn},{ref_ids[oi] if ref_ids is not None else ''},{card},{phone},"
                f"{sku_text[sku]},{cat_names[sku_cat[sku]]},{qty_l[i]},{money(price_l[i])},"
                f"{disc_s},{money(amt)},{pay_names[pays[i]]},"
                f"{amt // 100 if identified and member_sale else ''},"
                f"{redeem[i] if identified and member_sale and redeem[i] else ''}"
            )
        if member_sale:
            sales.append(_member_sales(w, orders, lines, amount, ids))
        rows_store.append(stores)
        rows_key.append(np.stack([secs[o], orders.seq[o], lines.line_no.astype(np.int64)], axis=1))
        rows_text.append(text)
        has_card = (orders.ident == 1) | (orders.ident == 3)
        cards.append(orders.acct[has_card])
        shows = (orders.ident == 2) | (orders.ident == 3)
        phones_old.append(orders.buyer[shows & ~orders.phone_new])
        phones_new.append(orders.buyer[shows & orders.phone_new])

    render(main, main_lines, "SALE", None, main.sec, main_lines.qty, main_lines.disc)
    render(sale.orders, sale.lines, "SALE", None, sale.orders.sec, sale.lines.qty, sale.lines.disc)
    n_returns = 0
    for lag in range(1, MAX_RETURN_LAG + 1):
        if d - lag < 0:
            break
        src = returnable(w, d - lag)
        due = np.flatnonzero(src.lag == lag)
        if not len(due):
            continue
        src_day = w.date(d - lag)
        keep_line = np.isin(src.lines.order, due) & (src.ret_line > 0)
        remap = np.full(len(src.orders.buyer), -1)
        remap[due] = np.arange(len(due))
        o = src.orders
        ret_orders = Orders(
            buyer=o.buyer[due],
            store=o.store[due],
            sec=src.ret_sec[due],
            ident=o.ident[due],
            acct=o.acct[due],
            phone=o.phone[due],
            phone_new=o.phone_new[due],
            pay=o.pay[due],
            seq=SEQ_RETURN + lag * SEQ_RETURN_STRIDE + np.arange(len(due)),
            redeem=np.zeros(len(due), dtype=np.int64),
        )
        sl = src.lines
        qty = src.ret_line[keep_line]
        # Pro-rate the line's discount so amount == qty * unit_price - discount holds exactly.
        disc = (sl.disc[keep_line] * qty) // sl.qty[keep_line]
        new_order = remap[sl.order[keep_line]]
        first = np.r_[True, new_order[1:] != new_order[:-1]]
        line_no = np.arange(len(new_order)) - np.maximum.accumulate(
            np.where(first, np.arange(len(new_order)), 0)
        )
        ret_lines = Lines(
            order=new_order,
            line_no=line_no + 1,
            sku=sl.sku[keep_line],
            qty=qty,
            price=sl.price[keep_line],
            disc=disc,
        )
        src_salt = w.day_salt(d - lag)
        refs = [order_id(src_day, s, src_salt) for s in o.seq[due].tolist()]
        render(ret_orders, ret_lines, "RETURN", refs, ret_orders.sec, qty, disc)
        n_returns += len(due)

    store_all = np.concatenate(rows_store)
    key_all = np.concatenate(rows_key)
    text_all = [t for part in rows_text for t in part]
    order_idx = np.lexsort((key_all[:, 2], key_all[:, 1], key_all[:, 0], store_all))
    n_valid = len(order_idx)

    # Plant bad rows: every reason shows up within the window even on small runs.
    n_min = -(-len(BAD_REASONS) // w.days)
    n_bad = max(n_min, int(rng.binomial(n_valid, BAD_RATE)))
    bad_store = rng.integers(0, len(w.store_ids), n_bad)
    bad_reason = [BAD_REASONS[(d * n_min + k) % len(BAD_REASONS)] for k in range(n_bad)]
    bad_rows: dict[int, list[tuple[float, list[str], str]]] = {}
    for k in range(n_bad):
        fields = _bad_fields(rng, bad_reason[k], w, day, int(bad_store[k]), SEQ_BAD + k)
        bad_rows.setdefault(int(bad_store[k]), []).append(
            (float(rng.random()), fields, bad_reason[k])
        )

    folder = out / "pos" / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    sorted_stores = store_all[order_idx]
    bounds = np.searchsorted(sorted_stores, np.arange(len(w.store_ids) + 1))
    files, bad = [], []
    for s, store_id in enumerate(w.store_ids):
        quote_all = bool(w.store_quote_all[s])
        idx = order_idx[bounds[s] : bounds[s + 1]].tolist()
        if quote_all:  # this till quotes every field; values hold no comma or quote
            rows = ['"' + text_all[i].replace(",", '","') + '"' for i in idx]
            header = '"' + '","'.join(COLUMNS) + '"'
        else:
            rows = [text_all[i] for i in idx]
            header = ",".join(COLUMNS)
        lines = [header]
        pos = 0
        for frac, fields, reason in sorted(bad_rows.get(s, []), key=lambda t: t[0]):
            at = int(frac * (len(rows) + 1))
            lines.extend(rows[pos:at])
            pos = max(pos, at)
            if quote_all:
                lines.append('"' + '","'.join(f.replace('"', '""') for f in fields) + '"')
            else:
                lines.append(",".join(_csv_field(v) for v in fields))
            bad.append(
                ("pos", f"pos/{day.isoformat()}/{pos_file_name(store_id, day)}", len(lines), reason)
            )
        lines.extend(rows[pos:])
        eol = "\r\n" if w.store_crlf[s] else "\n"
        name = pos_file_name(store_id, day)
        (folder / name).write_bytes((eol.join(lines) + eol).encode(w.store_encoding[s]))
        files.append(f"pos/{day.isoformat()}/{name}")

    def uniq(parts: list[np.ndarray]) -> np.ndarray:
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    return PosDay(
        files=files,
        lines=n_valid + n_bad,
        orders=len(main.buyer) + len(sale.orders.buyer) + n_returns + n_bad,
        returns=n_returns,
        bad=bad,
        cards=uniq(cards),
        phones_old=uniq(phones_old),
        phones_new=uniq(phones_new),
        placeholder_lines=int(np.sum(main.ident[main_lines.order] == 4)),
        member_sales=_concat_sales(sales),
    )
