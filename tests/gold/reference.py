"""An independent reference for gold/member_rfm, gold/member_tier_changes and
gold/member_lifecycle.

Written from CONTRACT section 4 alone, in plain pandas/Python over the silver
tables read with delta-rs (no Spark, nothing from jobs.gold): integer cents for
money, integer arithmetic for scores (least(5, 1 + floor(5 * (rank - 1) / n)) ==
min(5, 1 + 5 * (rank - 1) // n), where rank - 1 counts the members strictly before a
value). It serves the synthetic test here and the lead's check on a full generated zone (see test_reference.py).
"""

from __future__ import annotations

import bisect
import datetime as dt
import statistics
from decimal import Decimal
from pathlib import Path

import pandas as pd
import yaml

from jobs.lake import delta_arrow

CONF = Path(__file__).resolve().parents[2] / "conf"


def read_delta(lake: str | Path, name: str) -> pd.DataFrame:
    return delta_arrow(f"{lake}/{name}").to_pandas()


def _cents(v) -> int:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return 0
    return int((Decimal(str(v)) * 100).to_integral_value())


def _as_date(v) -> dt.date | None:
    if v is None or (not isinstance(v, dt.date) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.date()
    if isinstance(v, dt.datetime):
        return v.date()
    return v


def member_orders(orders: pd.DataFrame, as_of: dt.date) -> dict[str, list[dict]]:
    """member_id -> its distinct orders dated on or before D (dicts with date, cents...)."""
    out: dict[str, list[dict]] = {}
    seen: set[tuple] = set()
    for r in orders.to_dict("records"):
        mid, d = r["member_id"], _as_date(r["order_date"])
        if mid is None or (isinstance(mid, float) and pd.isna(mid)) or d is None or d > as_of:
            continue
        key = (r["order_id"], r["channel"])
        if key in seen:
            continue
        seen.add(key)
        out.setdefault(mid, []).append(
            {
                "date": d,
                "ts": r["order_ts"],
                "id": r["order_id"],
                "purchase": bool(r["is_purchase"]),
                "ret": r["txn_type"] == "RETURN" and not bool(r["is_purchase"]),
                "cents": _cents(r["net_amount"]),
            }
        )
    return out


def _scores(values: dict[str, float], descending: bool = False) -> dict[str, int]:
    n = len(values)
    vals = sorted(values.values())
    out = {}
    for m, v in values.items():
        # SQL RANK: 1 + members strictly before v (below it ascending, above it descending)
        before = n - bisect.bisect_right(vals, v) if descending else bisect.bisect_left(vals, v)
        out[m] = min(5, 1 + (5 * before) // n)
    return out


def _aov_trend(purchases: list[dict], as_of: dt.date) -> float | None:
    """Mean purchase amount of [D-89, D] over that of [D-179, D-90]; None if either is empty."""
    recent = [o["cents"] for o in purchases if (as_of - o["date"]).days <= 89]
    before = [o["cents"] for o in purchases if 90 <= (as_of - o["date"]).days <= 179]
    if not recent or not before or sum(before) == 0:
        return None
    return (sum(recent) / len(recent)) / (sum(before) / len(before))


def reference_tier_changes(
    orders: pd.DataFrame, previous: dt.date, as_of: dt.date
) -> dict[str, tuple[str, str, str]]:
    """member_id -> (direction, from_tier, to_tier) for buyers whose tier moved.

    A buyer of D with no purchase on ``previous`` had the lowest tier then.
    """
    rank = {"bronze": 0, "silver": 1, "gold": 2}
    before = {m: r["tier"] for m, r in reference_rfm(orders, previous).items()}
    out = {}
    for m, r in reference_rfm(orders, as_of).items():
        old, new = before.get(m, "bronze"), r["tier"]
        if old != new:
            out[m] = ("up" if rank[new] > rank[old] else "down", old, new)
    return out


def compare_tier_changes(lake: str | Path, previous: dt.date, as_of: dt.date) -> list[str]:
    """Differences between gold/member_tier_changes of ``as_of`` and the reference."""
    orders = read_delta(lake, "silver/orders")
    got_df = read_delta(lake, "gold/member_tier_changes")
    got_df = got_df[got_df["as_of_date"].map(_as_date) == as_of]
    got = {
        r["member_id"]: (r["direction"], r["from_tier"], r["to_tier"])
        for r in got_df.to_dict("records")
    }
    ref = reference_tier_changes(orders, previous, as_of)
    problems = [
        f"tier change {m}: gold {got.get(m)} != reference {ref.get(m)}"
        for m in sorted(set(got) | set(ref))
        if got.get(m) != ref.get(m)
    ]
    wrong_prev = {_as_date(v) for v in got_df["previous_as_of_date"]} - {previous}
    if wrong_prev:
        problems.append(f"tier changes compared with {wrong_prev}, not {previous}")
    return problems


def reference_rfm(orders: pd.DataFrame, as_of: dt.date) -> dict[str, dict]:
    """member_id -> recency_days, frequency, monetary_cents, r/f/m scores, segment, tier."""
    grid = yaml.safe_load((CONF / "rfm.yaml").read_text(encoding="utf-8"))["segments"]
    start = as_of - dt.timedelta(days=364)
    rows: dict[str, dict] = {}
    for mid, os_ in member_orders(orders, as_of).items():
        purchases = [o for o in os_ if o["purchase"]]
        if not purchases:
            continue
        inside = [o for o in os_ if start <= o["date"] <= as_of]
        spend = sum(o["cents"] for o in inside if o["purchase"])
        returned = sum(o["cents"] for o in inside if o["ret"])
        rows[mid] = {
            "recency_days": (as_of - max(o["date"] for o in purchases)).days,
            "frequency": sum(1 for o in inside if o["purchase"]),
            "monetary_cents": spend - returned,
            "aov_trend": _aov_trend(purchases, as_of),
        }
    scored = {m: r for m, r in rows.items() if r["frequency"] >= 1}
    f = _scores({m: r["frequency"] for m, r in scored.items()})
    mo = _scores({m: r["monetary_cents"] for m, r in scored.items()})
    rc = _scores({m: r["recency_days"] for m, r in scored.items()}, descending=True)
    for m, r in rows.items():
        r["r_score"], r["f_score"], r["m_score"] = rc.get(m, 1), f.get(m, 1), mo.get(m, 1)
        fm = (r["f_score"] + r["m_score"] + 1) // 2
        r["rfm_segment"] = grid[r["r_score"]][fm - 1]
        cents = r["monetary_cents"]
        r["tier"] = "gold" if cents >= 1_000_000 else "silver" if cents >= 200_000 else "bronze"
    return rows


def reference_lifecycle(
    orders: pd.DataFrame, members: pd.DataFrame, as_of: dt.date
) -> dict[str, str]:
    """member_id -> lifecycle stage (CONTRACT 4 rules in order) for every member known on D."""
    by_member = member_orders(orders, as_of)
    universe = set(by_member)
    for r in members.to_dict("records"):
        fs = _as_date(r["first_seen"])
        if fs is None or fs <= as_of:
            universe.add(r["member_id"])
    universe &= set(members["member_id"])
    start = as_of - dt.timedelta(days=364)
    out = {}
    for mid in universe:
        ps = sorted(
            (o for o in by_member.get(mid, []) if o["purchase"]),
            key=lambda o: (o["ts"], o["id"]),
        )
        if not ps:
            out[mid] = "prospect"
            continue
        recency = (as_of - ps[-1]["date"]).days
        first = ps[0]["date"]
        freq = sum(1 for o in ps if start <= o["date"])
        gaps = [(b["date"] - a["date"]).days for a, b in zip(ps, ps[1:], strict=False)]
        median = statistics.median(gaps) if gaps else 0
        if recency > 365:
            stage = "churned"
        elif recency > 180:
            stage = "dormant"
        elif recency > max(60, 2 * median):
            stage = "at_risk"
        elif first >= as_of - dt.timedelta(days=29):
            stage = "new"
        elif first < as_of - dt.timedelta(days=179) and freq >= 4:
            stage = "mature"
        elif freq >= 2:
            stage = "growing"
        else:
            stage = "active"
        out[mid] = stage
    return out


def compare(lake: str | Path, as_of: dt.date) -> list[str]:
    """Differences between gold tables of ``lake`` for ``as_of`` and the reference."""
    orders = read_delta(lake, "silver/orders")
    members = read_delta(lake, "silver/members")
    problems: list[str] = []

    rfm = read_delta(lake, "gold/member_rfm")
    rfm = rfm[rfm["as_of_date"].map(_as_date) == as_of]
    ref = reference_rfm(orders, as_of)
    got = {r["member_id"]: r for r in rfm.to_dict("records")}
    if set(got) != set(ref):
        problems.append(
            f"rfm members: {len(set(got) - set(ref))} extra, {len(set(ref) - set(got))} missing"
        )
    for m in sorted(set(got) & set(ref)):
        g, e = got[m], ref[m]
        gv = (
            int(g["recency_days"]),
            int(g["frequency"]),
            _cents(g["monetary"]),
            int(g["r_score"]),
            int(g["f_score"]),
            int(g["m_score"]),
            g["rfm_segment"],
            g["tier"],
        )
        ev = (
            e["recency_days"],
            e["frequency"],
            e["monetary_cents"],
            e["r_score"],
            e["f_score"],
            e["m_score"],
            e["rfm_segment"],
            e["tier"],
        )
        if gv != ev:
            problems.append(f"rfm {m}: gold {gv} != reference {ev}")
        ga, ea = g["aov_trend"], e["aov_trend"]
        ga = None if ga is None or pd.isna(ga) else float(ga)
        if (ga is None) != (ea is None) or (ea is not None and abs(ga - ea) > 1e-9 * abs(ea)):
            problems.append(f"rfm {m}: aov_trend gold {ga} != reference {ea}")

    lc = read_delta(lake, "gold/member_lifecycle")
    lc = lc[lc["as_of_date"].map(_as_date) == as_of]
    got_lc = dict(zip(lc["member_id"], lc["stage"], strict=True))
    ref_lc = reference_lifecycle(orders, members, as_of)
    if set(got_lc) != set(ref_lc):
        problems.append(
            f"lifecycle members: {len(set(got_lc) - set(ref_lc))} extra, "
            f"{len(set(ref_lc) - set(got_lc))} missing"
        )
    for m in sorted(set(got_lc) & set(ref_lc)):
        if got_lc[m] != ref_lc[m]:
            problems.append(f"lifecycle {m}: gold {got_lc[m]} != reference {ref_lc[m]}")
    return problems
