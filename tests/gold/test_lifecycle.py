"""gold/member_lifecycle: each rule, its boundary and its precedence; transitions."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.config import ConfigError
from jobs.gold.conf import load_lifecycle
from tests.gold.conftest import D, member, order, rows_by_member

# member -> (purchase offsets from D, expected stage, why)
CASES: dict[str, tuple[list[int], str]] = {
    "P_NONE": ([], "prospect"),
    "CH_366": ([-366], "churned"),  # churned before dormant
    "CH_365": ([-365], "dormant"),  # 365 is not > 365
    "DO_181": ([-181], "dormant"),  # dormant before at_risk
    "DO_180": ([-180], "at_risk"),  # 180 is not > 180; > 60 with no gap history
    "AR_61": ([-61], "at_risk"),
    "AR_60": ([-60], "active"),  # 60 is not > max(60, -)
    # gaps 40, 40: threshold max(60, 80) = 80
    "GAP_81": ([-161, -121, -81], "at_risk"),
    "GAP_80": ([-160, -120, -80], "growing"),  # not at_risk, tenure 160 < 180
    # gap 100: threshold 200, recency 100 -> not at risk; 2 purchases -> growing
    "GAP_BIG": ([-200, -100], "growing"),
    "NEW_29": ([-29, -10, 0], "new"),  # new before growing
    "NEW_30": ([-30], "active"),  # D-30 is outside [D-29, D]
    # first purchase D-180 (before D-179) and 4 purchases: gaps 80, 50, 40 -> 50 -> 100
    "MAT_180": ([-180, -100, -50, -10], "mature"),
    "MAT_179": ([-179, -100, -50, -10], "growing"),  # first purchase is D-179 itself
    "MAT_3": ([-300, -100, -50], "growing"),  # 3 purchases: gaps 200, 50 -> 125 -> 250
    "ACT": ([-40], "active"),
}


def test_each_rule_and_precedence(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    orders = [
        order(f"{m}-{i}", m, off, 10.0)
        for m, (offs, _) in CASES.items()
        for i, off in enumerate(offs)
    ]
    orders.append(order("ret", "P_RET", -5, 10.0, txn="RETURN"))  # returns only: prospect
    members = [member(m) for m in CASES] + [member("P_RET")]
    silver(ctx, orders=orders, members=members)
    figures = run_gold(ctx, "features", "lifecycle")
    got = {m: r["stage"] for m, r in rows_by_member(ctx, "gold/member_lifecycle").items()}
    want = {m: stage for m, (_, stage) in CASES.items()} | {"P_RET": "prospect"}
    assert got == want
    assert figures["lifecycle"]["stages"]["prospect"] == 2
    assert figures["lifecycle"]["transitions"] == 0  # first date: nothing to compare with


def test_transitions_against_previous_date(make_ctx, silver, run_gold):
    prev = D - dt.timedelta(days=1)
    orders = [
        order("w1", "W", -30, 10.0),  # D-1: new (first purchase D-1-29); D: active
        order("y1", "Y", 0, 10.0),  # D-1: prospect; D: new
        order("s1", "S", -5, 10.0),  # new on both dates: no transition
    ]
    members = [member("W"), member("Y"), member("S"), member("LATE", 0)]  # LATE first seen on D
    ctx_prev, ctx = make_ctx(prev), make_ctx(D)
    silver(ctx, orders=orders, members=members)
    run_gold(ctx_prev, "features", "lifecycle")
    run_gold(ctx, "features", "lifecycle")
    got = {
        (r["member_id"], r["from_stage"], r["to_stage"], r["previous_as_of_date"])
        for r in ctx.lake.read("gold/lifecycle_transitions")
        .filter(F.col("as_of_date") == F.lit(D))
        .collect()
    }
    assert got == {
        ("W", "new", "active", prev),
        ("Y", "prospect", "new", prev),
        ("LATE", None, "prospect", prev),
    }


def test_bad_lifecycle_rule_rejected(spark, tmp_path):
    (tmp_path / "lifecycle.yaml").write_text(
        "rules:\n  - stage: prospect\n    when: first_purchase_date IS NULL\n"
        "  - stage: churned\n    when: recency > {days}\n    params: {days: 365}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"rule 2 \(churned\)"):
        load_lifecycle(spark, tmp_path)
    (tmp_path / "lifecycle.yaml").write_text(
        "rules:\n  - stage: churned\n    when: recency_days > {dayz}\n    params: {days: 365}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"placeholder"):
        load_lifecycle(spark, tmp_path)


def test_previous_date_is_the_latest_earlier_one(make_ctx, silver, run_gold):
    """The comparison date is the latest computed date before D (from the Delta log):
    not a later date, not an earlier one, and none for the first date."""
    from jobs.gold.common import previous_as_of

    orders = [order("y1", "Y", 0, 10.0)]  # Y: prospect before D, new on D
    ctxs = {off: make_ctx(D + dt.timedelta(days=off)) for off in (2, -10, -3, 0)}
    silver(ctxs[0], orders=orders, members=[member("Y")])
    assert previous_as_of(ctxs[0], "gold/member_lifecycle") is None  # no table yet
    for off in (2, -10, -3, 0):  # a later date first, then a backfill of older ones
        run_gold(ctxs[off], "features", "lifecycle")
    assert previous_as_of(ctxs[-10], "gold/member_lifecycle") is None
    assert previous_as_of(ctxs[-3], "gold/member_lifecycle") == D - dt.timedelta(days=10)
    assert previous_as_of(ctxs[0], "gold/member_lifecycle") == D - dt.timedelta(days=3)
    assert previous_as_of(ctxs[2], "gold/member_lifecycle") == D
    got = [
        (r["member_id"], r["from_stage"], r["to_stage"], r["previous_as_of_date"])
        for r in ctxs[0]
        .lake.read("gold/lifecycle_transitions")
        .filter(F.col("as_of_date") == F.lit(D))
        .collect()
    ]
    assert got == [("Y", "prospect", "new", D - dt.timedelta(days=3))]
