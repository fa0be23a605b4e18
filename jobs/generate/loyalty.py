"""The loyalty points ledger of a generated landing zone (CONTRACT 1.4) and its truth.

Written after every POS day, in the main process, from the member SALE orders the
POS generator printed points on (``PosDay.member_sales``) and its own random stream
(``[seed, LEDGER_STREAM]``), so the POS, web and CRM files are the same bytes with or
without it. One ledger per CRM account (``crm_id``):

* an opening balance (``carried_over`` lots earned before the window, each lapsing
  at the end of a month in the next year) for accounts registered before the window;
  an account redeeming at the till without one gets a ``welcome_bonus`` first;
* ``EARN`` ``purchase`` for each member SALE order: exactly the till's
  ``points_earned`` (one point a yuan), lapsing at the end of the month a year on;
  ``REDEEM`` ``coupon`` for the till's ``points_redeemed``;
* ``birthday_bonus`` by tier (heavy 500, regular 200, others 100) and ``review`` bonuses;
* gift redemptions (``gift:<item>``) that cluster in the 30 days before a lot lapses;
* ``EXPIRE`` of what is left of a lot the day after its ``expire_date``;
* ``ADJUST`` ``correction`` rows: small credits, and reversals of a purchase's points.

Redemptions, expiries and reversals are booked first-expiring-lot first and never
take a balance below 0. Planted mess (``truth/loyalty_*.csv``): rows breaking one
rule each, identical re-deliveries of a day's rows in the next day's file, the same
``txn_id`` re-sent with other points (a conflict), rows of a ``crm_id`` no CRM export
knows (kept, member not found; reason ``review:好评``, so every file holds Chinese text),
and GB18030, BOM and CRLF files.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import heapq
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jobs.generate.fmt import card_text, crm_id_text
from jobs.generate.world import HEAVY, REGULAR, World

LEDGER_STREAM = 0x10A1  # the ledger's own random stream: other sources' bytes never change
COLUMNS = ("txn_id", "crm_id", "member_card_no", "txn_ts", "txn_type", "points", "order_id",
           "store_id", "reason", "expire_date")  # fmt: skip
GIFTS = ("保温杯", "电饭煲", "购物袋", "洗衣液", "电影票", "行李箱")
BIRTHDAY_BONUS = {HEAVY: 500, REGULAR: 200}  # by activity tier; others 100
REVIEW_BONUS = 20
REVIEWS_PER_ACCOUNT_DAY = 0.002
GIFT_SHARE = 0.45  # of lots of 300+ points lapsing in the window, redeemed for a gift before
CREDIT_SHARE, REVERSAL_SHARE = 0.02, 0.01  # of purchase EARNs corrected the next day
BAD_RATE, RESEND_RATE = 0.004, 0.01
BAD_REASONS = ("txn_id_required", "member_missing", "txn_ts_invalid", "txn_ts_out_of_range",
               "txn_type_invalid", "points_invalid")  # fmt: skip
UNKNOWN_CRM_BASE = 990_000_000  # crm ids no CRM export sends


@dataclass(order=True)
class _Event:
    """One ledger booking of one account, ordered by time (grain: one future row)."""

    day: int
    sec: int
    seq: int
    kind: str = field(compare=False)  # EARN, REDEEM, GIFT, EXPIRE, ADJUST
    points: int = field(compare=False)
    reason: str = field(compare=False, default="")
    order_id: str = field(compare=False, default="")
    store: int = field(compare=False, default=-1)
    card: bool = field(compare=False, default=False)
    expire: dt.date | None = field(compare=False, default=None)
    lot: list | None = field(compare=False, default=None)


@dataclass
class LedgerSummary:
    files: list[str]
    rows: int  # data rows written, planted ones included
    bad: list[tuple[str, int, str]]  # (file, line, rule)
    duplicates: list[tuple[str, str, int]]  # (txn_id, file, line): identical re-deliveries
    unknown_member_rows: int
    by_type: dict[str, int]
    balances: dict[str, int]  # crm_id -> balance at the end (valid rows only)


def month_end(day: dt.date, months_on: int = 0) -> dt.date:
    """The last day of the month ``months_on`` months after ``day``'s."""
    y, m = divmod(day.month - 1 + months_on, 12)
    year, month = day.year + y, m + 1
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def _initial_events(w: World, rng: np.random.Generator, sales: list[dict]) -> dict[int, list]:
    """Per account: opening lots, purchases and till redemptions, birthdays, reviews."""
    events: dict[int, list[_Event]] = {}
    seq = iter(range(1 << 62))

    def add(acct: int, ev: _Event) -> None:
        events.setdefault(acct, []).append(ev)

    redeemed = Counter()
    for day_sales in sales:
        for a, r in zip(day_sales["acct"].tolist(), day_sales["redeemed"].tolist(), strict=True):
            if r:
                redeemed[a] += r
    for a in np.flatnonzero(w.acct_reg_day < 0).tolist():
        if rng.random() < 0.8:
            for k in range(int(rng.integers(1, 4))):
                reserve = redeemed.pop(a, 0) if k == 0 else 0
                # the lot holding what the till will redeem lapses after the window
                lapse = w.date(0) + dt.timedelta(days=400 if reserve else int(rng.integers(0, 180)))
                pts = int(rng.integers(1, 31)) * 100 + reserve
                add(a, _Event(0, 60 + k, next(seq), "EARN", pts, "carried_over", expire=lapse))
    for a, pts in redeemed.items():  # till redemptions of accounts without an opening lot
        d = max(int(w.acct_reg_day[a]), 0)
        lapse = month_end(w.date(d), 12)
        add(a, _Event(d, 1, next(seq), "EARN", pts + 100, "welcome_bonus", expire=lapse))
    for d, day_sales in enumerate(sales):
        lapse = month_end(w.date(d), 12)
        cols = zip(day_sales["order_id"], day_sales["store"].tolist(), day_sales["sec"].tolist(),
                   day_sales["acct"].tolist(), day_sales["card_shown"].tolist(),
                   day_sales["earned"].tolist(), day_sales["redeemed"].tolist(), strict=True)  # fmt: skip
        for oid, store, sec, a, card, earned, red in cols:
            if red:
                add(a, _Event(d, sec, next(seq), "REDEEM", red, "coupon", oid, store, card))
            if earned:
                add(a, _Event(d, sec, next(seq), "EARN", earned, "purchase", oid, store, card,
                              expire=lapse))  # fmt: skip
    _bonuses(w, rng, add, seq)
    return events


def _bonuses(w: World, rng: np.random.Generator, add, seq) -> None:
    """Birthday bonuses (by tier) of primary accounts and review bonuses."""
    owner = w.acct_owner
    primary = w.first_acct[owner] == np.arange(len(owner))
    birth = np.datetime64("1970-01-01", "D") + w.birth[owner].astype("timedelta64[D]")
    month = birth.astype("datetime64[M]")
    month_day = (month.astype(int) % 12 + 1) * 100 + (birth - month).astype(int) + 1
    for d in range(w.days):
        day = w.date(d)
        today = primary & (w.acct_reg_day <= d) & (month_day == day.month * 100 + day.day)
        for a in np.flatnonzero(today).tolist():
            tier = BIRTHDAY_BONUS.get(int(w.activity[owner[a]]), 100)
            add(a, _Event(d, 9 * 3600, next(seq), "EARN", tier, "birthday_bonus",
                          expire=month_end(day, 12)))  # fmt: skip
        registered = np.flatnonzero(w.acct_reg_day <= d)
        n = int(rng.poisson(len(registered) * REVIEWS_PER_ACCOUNT_DAY))
        for a in rng.choice(registered, min(n, len(registered)), replace=False).tolist():
            sec = int(rng.integers(8 * 3600, 23 * 3600))
            add(a, _Event(d, sec, next(seq), "EARN", REVIEW_BONUS, "review",
                          expire=month_end(day, 12)))  # fmt: skip


def _take(lots: list[list], points: int) -> None:
    """Book ``points`` off the lots, first-expiring first (lots: [expire, remaining])."""
    for lot in sorted(lots, key=lambda x: x[0]):
        used = min(lot[1], points)
        lot[1] -= used
        points -= used
        if not points:
            return


def _simulate(w: World, rng: np.random.Generator, evs: list[_Event]) -> list[_Event]:
    """The account's rows in time order, with gifts, expiries and corrections added."""
    heap = list(evs)
    heapq.heapify(heap)
    seq = 1 << 40
    lots: list[list] = []
    out: list[_Event] = []
    # Points the till will redeem later: gifts, reversals and expiries leave them alone.
    reserved = sum(ev.points for ev in evs if ev.kind == "REDEEM")
    while heap:
        ev = heapq.heappop(heap)
        balance = sum(x[1] for x in lots)
        free = balance - reserved
        if ev.kind == "EARN":
            lot = [ev.expire, ev.points]
            lots.append(lot)
            out.append(ev)
            seq = _plan_lot(w, rng, heap, ev, lot, seq)
        elif ev.kind == "EXPIRE":
            pts = min(ev.lot[1], free)
            if pts > 0:
                out.append(_Event(ev.day, ev.sec, ev.seq, "EXPIRE", pts, "expiry"))
                _take(lots, pts)
            ev.lot[1] = 0
        elif ev.kind in ("REDEEM", "GIFT"):
            if ev.kind == "REDEEM":
                pts, reserved = ev.points, reserved - ev.points
            else:
                pts = min(ev.points, free) // 100 * 100
            if pts > 0:
                out.append(_Event(ev.day, ev.sec, ev.seq, "REDEEM", pts, ev.reason, ev.order_id,
                                  ev.store, ev.card))  # fmt: skip
                _take(lots, pts)
        elif ev.kind == "ADJUST" and (ev.points > 0 or -ev.points <= free):
            out.append(ev)
            if ev.points > 0:
                lots.append([month_end(w.date(ev.day), 12), ev.points])
            else:
                _take(lots, -ev.points)
    return out


def _plan_lot(w: World, rng: np.random.Generator, heap: list, ev: _Event, lot: list,
              seq: int) -> int:  # fmt: skip
    """Schedule what becomes of a new lot inside the window: its expiry, maybe a gift
    redemption in the 30 days before, and a correction the next day."""
    last = w.days - 1
    lapse_day = (ev.expire - w.start).days + 1
    if lapse_day <= last:
        heapq.heappush(heap, _Event(lapse_day, 600, seq, "EXPIRE", 0, lot=lot))
        if ev.points >= 300 and rng.random() < GIFT_SHARE:
            first = max(ev.day, lapse_day - 31)
            day = int(rng.integers(first, lapse_day))
            pts = int(rng.integers(3, ev.points // 100 + 1)) * 100
            gift = f"gift:{GIFTS[int(rng.integers(0, len(GIFTS)))]}"
            sec = int(rng.integers(10 * 3600, 21 * 3600))
            heapq.heappush(heap, _Event(day, sec, seq + 1, "GIFT", pts, gift))
    if ev.reason == "purchase" and ev.day < last:
        r = rng.random()
        pts = int(rng.integers(1, 51)) if r < CREDIT_SHARE else -ev.points
        if r < CREDIT_SHARE + REVERSAL_SHARE:
            sec = int(rng.integers(9 * 3600, 18 * 3600))
            heapq.heappush(heap, _Event(ev.day + 1, sec, seq + 2, "ADJUST", pts, "correction",
                                        ev.order_id))  # fmt: skip
    return seq + 3


def _row(w: World, rng: np.random.Generator, txn_id: str, acct: int, ev: _Event) -> list[str]:
    """CSV fields of one booking. About 5% name the member by card only, 30% by both."""
    card = int(w.acct_card[acct]) if acct >= 0 else 0
    r = rng.random()
    show_card = card > 0 and (ev.card or r < 0.35)
    crm = crm_id_text(int(w.acct_num[acct])) if acct >= 0 else crm_id_text(UNKNOWN_CRM_BASE + ev.seq)
    if show_card and r < 0.05:
        crm = ""
    ts = f"{w.date(ev.day).isoformat()} {ev.sec // 3600:02d}:{ev.sec // 60 % 60:02d}:{ev.sec % 60:02d}"
    return [
        txn_id, crm, card_text(card) if show_card else "", ts, ev.kind, str(ev.points),
        ev.order_id, w.store_ids[ev.store] if ev.store >= 0 else "", ev.reason,
        ev.expire.isoformat() if ev.kind == "EARN" and ev.expire else "",
    ]  # fmt: skip


def _bad_row(rng: np.random.Generator, w: World, d: int, k: int, reason: str) -> list[str]:
    """A row breaking exactly ``reason`` (and no other rule)."""
    day = w.date(d)
    f = [f"PTBAD{day:%Y%m%d}{k:04d}", crm_id_text(int(w.acct_num[int(rng.integers(0, len(w.acct_num)))])),
         "", f"{day.isoformat()} 12:00:00", "EARN", "50", "", "", "review",
         month_end(day, 12).isoformat()]  # fmt: skip
    if reason == "txn_id_required":
        f[0] = ""
    elif reason == "member_missing":
        f[1] = ""
    elif reason == "txn_ts_invalid":
        f[3] = ("2026/13/01 10:00", f"{day.isoformat()} 25:61:00", "yesterday")[k % 3]
    elif reason == "txn_ts_out_of_range":
        f[3] = f"{(day + dt.timedelta(days=30)).isoformat()} 10:00:00"
    elif reason == "txn_type_invalid":
        f[4] = ("BONUS", "earn", "TRANSFER")[k % 3]
        f[9] = ""
    elif reason == "points_invalid":
        f[5] = ("0", "-50", "12.5", "abc")[k % 4]
    return f


def _bookings(w: World, rng: np.random.Generator, sales: list[dict]) -> list[list]:
    """Per day: (sec, account, event) of every valid booking, accounts' and unknown ones'."""
    by_day: list[list] = [[] for _ in range(w.days)]
    for acct, evs in sorted(_initial_events(w, rng, sales).items()):
        for ev in _simulate(w, rng, evs):
            by_day[ev.day].append((ev.sec, acct, ev))
    for d in range(w.days):  # a member the loyalty system knows and no CRM export does
        ev = _Event(d, int(rng.integers(8 * 3600, 22 * 3600)), d, "EARN", REVIEW_BONUS,
                    "review:好评", expire=month_end(w.date(d), 12))  # fmt: skip
        by_day[d].append((ev.sec, -1, ev))
    for rows in by_day:
        rows.sort(key=lambda t: (t[0], t[1], t[2].seq))
    return by_day


def _day_lines(w: World, rng: np.random.Generator, d: int, rows: list, prev: list[list[str]],
               summary: LedgerSummary, rel: str) -> tuple[list[list[str]], list[list[str]]]:  # fmt: skip
    """(valid rows, all data rows in file order) of day d; truth recorded in ``summary``."""
    day = w.date(d)
    valid = [_row(w, rng, f"PT{day:%Y%m%d}{i:06d}", a, ev) for i, (_, a, ev) in enumerate(rows)]
    lines = list(valid)
    extra: list[tuple[list[str], str | None]] = []
    for f in prev:  # yesterday's rows re-delivered, and now and then one re-sent changed
        if rng.random() < RESEND_RATE:
            extra.append((list(f), None))
    if prev and d % 3 == 1:
        changed = list(prev[int(rng.integers(0, len(prev)))])
        changed[5] = str(int(changed[5]) + 1) if changed[4] != "ADJUST" else str(int(changed[5]) * 2)
        extra.append((changed, "txn_id_conflict"))
    n_bad = max(-(-len(BAD_REASONS) // w.days), int(rng.binomial(len(valid), BAD_RATE)))
    for k in range(n_bad):
        reason = BAD_REASONS[(d * n_bad + k) % len(BAD_REASONS)]
        extra.append((_bad_row(rng, w, d, k, reason), reason))
    for f, reason in extra:
        at = int(rng.integers(0, len(lines) + 1))
        lines.insert(at, f)
        f.append(reason or "")  # marker, removed below once line numbers are known
    for i, f in enumerate(lines):
        if len(f) == len(COLUMNS) + 1:
            reason = f.pop()
            if reason:
                summary.bad.append((rel, i + 2, reason))
            else:
                summary.duplicates.append((f[0], rel, i + 2))
    return valid, lines


def _encode(w: World, d: int, lines: list[list[str]]) -> bytes:
    """The file's bytes: GB18030 with CRLF every 7th day from the 4th, a BOM from the 6th."""
    buf = []
    for f in [list(COLUMNS), *lines]:
        buf.append(",".join(f'"{v}"' if "," in v or '"' in v else v for v in f))
    if d % 7 == 3:
        return ("\r\n".join(buf) + "\r\n").encode("gb18030")
    text = "\n".join(buf) + "\n"
    return ("\ufeff" + text).encode("utf-8") if d % 7 == 5 else text.encode("utf-8")


def points_file_name(day: dt.date) -> str:
    return f"points_{day:%Y%m%d}.csv"


def generate_loyalty(w: World, sales: list[dict], out: Path) -> LedgerSummary:
    """Write ``loyalty/<date>/points_<YYYYMMDD>.csv`` for every day (no ``_SUCCESS``) and
    ``truth/loyalty_*.csv``; ``sales[d]`` is day d's ``PosDay.member_sales``."""
    rng = np.random.default_rng([w.seed, LEDGER_STREAM])
    summary = LedgerSummary([], 0, [], [], 0, {}, {})
    types: Counter = Counter()
    prev: list[list[str]] = []
    for d, rows in enumerate(_bookings(w, rng, sales)):
        day = w.date(d)
        rel = f"loyalty/{day.isoformat()}/{points_file_name(day)}"
        valid, lines = _day_lines(w, rng, d, rows, prev, summary, rel)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(_encode(w, d, lines))
        summary.files.append(rel)
        summary.rows += len(lines)
        for (_, acct, ev), f in zip(rows, valid, strict=True):
            types[ev.kind] += 1
            holder = crm_id_text(int(w.acct_num[acct])) if acct >= 0 else f[1]
            sign = -1 if ev.kind in ("REDEEM", "EXPIRE") else 1
            summary.balances[holder] = summary.balances.get(holder, 0) + sign * ev.points
            summary.unknown_member_rows += acct < 0
        prev = valid
    summary.by_type = dict(sorted(types.items()))
    _write_truth(out / "truth", summary)
    return summary


def _write_truth(truth: Path, s: LedgerSummary) -> None:
    truth.mkdir(parents=True, exist_ok=True)
    tables = {
        "loyalty_bad_rows.csv": (("file", "line_no", "reason"), s.bad),
        "loyalty_duplicates.csv": (("txn_id", "file", "line_no"), s.duplicates),
        "points_balances.csv": (("crm_id", "balance"), sorted(s.balances.items())),
    }
    for name, (header, rows) in tables.items():
        with (truth / name).open("w", encoding="utf-8", newline="") as fh:
            wr = csv.writer(fh, lineterminator="\n")
            wr.writerow(header)
            wr.writerows(rows)
