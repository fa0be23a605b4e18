"""The points programme in the rules: the points tags of conf/tags.yaml on both sides of
their thresholds, and the KPI points_redemption_rate against its target."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from jobs.gold import kpis, points
from jobs.report.kpi_targets import history_from_spark, kpi_gaps
from tests.gold.conftest import D, member, order
from tests.gold.test_points import ledger_row, write_ledger


def test_points_tags_on_both_sides_of_their_thresholds(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    ledger = [
        # points_expiring_soon: 200 held points lapse within 30 days vs 199
        ledger_row(1, "E1", -100, "EARN", 200, expire=30),
        ledger_row(2, "E2", -100, "EARN", 250, expire=30),
        ledger_row(3, "E2", -50, "REDEEM", 51),
        # points_hoarder: 10000 points and no redemption in [D-179, D]
        ledger_row(4, "H1", -300, "EARN", 10100, expire=400),
        ledger_row(5, "H1", -180, "REDEEM", 100),  # 180 days ago: outside the 180 days
        ledger_row(6, "H2", -300, "EARN", 10100, expire=400),
        ledger_row(7, "H2", -179, "REDEEM", 100),  # 179 days ago: inside
        ledger_row(8, "H3", -10, "EARN", 9999),  # never redeemed, below 10000
        ledger_row(9, "H4", -10, "EARN", 12000),  # never redeemed
    ]
    write_ledger(ctx, ledger)
    members = ["E1", "E2", "H1", "H2", "H3", "H4", "N"]
    silver(ctx, orders=[order("o1", "N", -3, 10.0)], members=[member(m) for m in members])
    run_gold(ctx, "features", "rfm")
    points.run(ctx)
    run_gold(ctx, "tags")
    held = ctx.lake.read("gold/member_tags").where(F.col("as_of_date") == F.lit(D)).collect()
    by_tag = {t: {r["member_id"] for r in held if r["tag"] == t} for t in {r["tag"] for r in held}}
    assert by_tag["points_expiring_soon"] == {"E1"}
    assert by_tag["points_hoarder"] == {"H1", "H4"}


def test_points_redemption_rate_against_its_target(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    write_ledger(
        ctx,
        [
            ledger_row(1, "A", -364, "EARN", 1000),  # first day of the 365 days
            ledger_row(2, "A", -365, "EARN", 5000),  # outside
            ledger_row(3, "A", 0, "REDEEM", 300),
            ledger_row(4, None, -5, "EARN", 1000),  # a member not found still earned them
            ledger_row(5, None, -5, "REDEEM", 800),
            ledger_row(6, "A", 1, "REDEEM", 900),  # after D
        ],
    )
    silver(ctx, orders=[order("o1", "A", -3, 10.0)], members=[member("A")])
    run_gold(ctx, "features", "kpis")
    kpi = ctx.lake.read("gold/kpi_daily")
    row = kpi.collect()[0]
    assert (row["points_earned_365d"], row["points_redeemed_365d"]) == (2000, 1100)
    assert row["points_redemption_rate"] == pytest.approx(0.55)
    gaps = {g["kpi"]: g for g in kpi_gaps(history_from_spark(kpi, D), D, kpis.load_kpis())}
    rate = gaps["points_redemption_rate"]
    assert (rate["target"], rate["met"]) == (0.55, True)
