"""An independent reference for gold/member_points (CONTRACT 1.4 and 3).

Plain Python over silver/points_ledger read with delta-rs (no Spark, nothing from
jobs.gold): each member's transactions are replayed as a list of lots (one per EARN
row, with its expire date) from which every REDEEM, EXPIRE and negative ADJUST takes
points, earliest expire date first (lots without one last). ``expiring_30d`` is what
is left on D in the lots expiring in [D+1, D+30].
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from tests.gold.reference import _as_date, read_delta

NEVER = dt.date.max


def _lots_left(rows: list[dict]) -> list[list]:
    """[expire_date, points left] per EARN lot after every debit took its points."""
    lots = sorted(
        ([r["expire"] or NEVER, r["points"]] for r in rows if r["type"] == "EARN"),
        key=lambda lot: lot[0],
    )
    debit = sum(
        r["points"] if r["type"] in ("REDEEM", "EXPIRE") else -r["points"]
        for r in rows
        if r["type"] in ("REDEEM", "EXPIRE") or (r["type"] == "ADJUST" and r["points"] < 0)
    )
    for lot in lots:
        take = min(debit, lot[1])
        lot[1] -= take
        debit -= take
    return lots


def _one_member(rows: list[dict], as_of: dt.date, year: int, ahead: int) -> dict:
    first_day = as_of - dt.timedelta(days=year - 1)
    recent = [r for r in rows if r["date"] >= first_day]

    def total(kind: str, rs: list[dict]) -> int:
        return sum(r["points"] for r in rs if r["type"] == kind)

    earned, redeemed = total("EARN", recent), total("REDEEM", recent)
    redemptions = [r["date"] for r in rows if r["type"] == "REDEEM"]
    last = max(redemptions) if redemptions else None
    horizon = as_of + dt.timedelta(days=ahead)
    return {
        "balance": total("EARN", rows)
        + total("ADJUST", rows)
        - total("REDEEM", rows)
        - total("EXPIRE", rows),
        "earned_365d": earned,
        "redeemed_365d": redeemed,
        "expired_365d": total("EXPIRE", recent),
        "adjusted_365d": total("ADJUST", recent),
        "expiring_30d": sum(left for exp, left in _lots_left(rows) if as_of < exp <= horizon),
        "redeemed_share_365d": redeemed / earned if earned else None,
        "last_redemption_date": last,
        "days_since_redemption": (as_of - last).days if last else None,
        "first_txn_date": min(r["date"] for r in rows),
        "last_txn_date": max(r["date"] for r in rows),
    }


def expected_member_points(
    lake: str | Path, as_of: dt.date, year: int = 365, ahead: int = 30
) -> dict[str, dict]:
    """member_id -> the gold/member_points columns of D, from silver/points_ledger."""
    ledger = read_delta(lake, "silver/points_ledger")
    by_member: dict[str, list[dict]] = {}
    for r in ledger.to_dict("records"):
        mid, day = r["member_id"], _as_date(r["txn_date"])
        if mid is None or (isinstance(mid, float) and pd.isna(mid)) or day > as_of:
            continue
        by_member.setdefault(mid, []).append(
            {
                "type": r["txn_type"],
                "points": int(r["points"]),
                "date": day,
                "expire": _as_date(r.get("expire_date")),
            }
        )
    return {m: _one_member(rows, as_of, year, ahead) for m, rows in by_member.items()}


def compare_member_points(lake: str | Path, as_of: dt.date) -> list[str]:
    """Differences between gold/member_points of D and the reference (empty: none)."""
    frame = read_delta(lake, "gold/member_points")
    got = {
        r["member_id"]: r for r in frame.to_dict("records") if _as_date(r["as_of_date"]) == as_of
    }
    want = expected_member_points(lake, as_of)
    problems = [f"{m}: missing" for m in sorted(set(want) - set(got))]
    problems += [f"{m}: not expected" for m in sorted(set(got) - set(want))]
    for member in sorted(set(want) & set(got)):
        for col, value in want[member].items():
            have = got[member][col]
            have = None if have is None or (isinstance(have, float) and pd.isna(have)) else have
            if isinstance(have, dt.date) or col.endswith("_date"):
                have = _as_date(have)
            elif have is not None:
                have = float(have) if isinstance(value, float) else int(have)
            same = have == value or (
                isinstance(value, float) and have is not None and abs(have - value) < 1e-9
            )
            if not same:
                problems.append(f"{member}.{col}: got {have!r}, want {value!r}")
    return problems
