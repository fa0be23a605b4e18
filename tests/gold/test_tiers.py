"""Issue 15 item 6: tier movement, near-next-tier and purchase-cycle tags, AOV trend and
the basket attach rate, on real Delta tables."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.config import with_paths
from jobs.exports.segments import load_segments, segment_view, validate_predicates
from jobs.gold.value_view import with_value
from tests.gold.conftest import D, member, order, rows_by_member

PREV = D - dt.timedelta(days=1)


def _tier_scenario() -> tuple[list[dict], list[dict]]:
    orders = [
        order("a1", "A", -100, 1990.0),
        order("a2", "A", 0, 20.0),  # bronze on D-1, silver on D: up
        order("b1", "B", -365, 2500.0),  # in D-1's 365 days, not in D's: silver -> bronze
        order("c1", "C", 0, 12000.0),  # first purchase on D: bronze (no row) -> gold
        order("e1", "E", -10, 15000.0),  # gold both days
        order("f1", "F", -10, 50.0),  # bronze both days
    ]
    return orders, [member(m) for m in "ABCEF"]


def _changes(ctx, as_of: dt.date) -> dict[str, tuple]:
    return {
        m: (r["direction"], r["from_tier"], r["to_tier"], r["previous_as_of_date"])
        for m, r in rows_by_member(ctx, "gold/member_tier_changes", as_of).items()
    }


def test_tier_changes_nightly_rerun_and_backfill(make_ctx, silver, run_gold, settings, tmp_path):
    orders, members = _tier_scenario()
    ctx_prev, ctx = make_ctx(PREV), make_ctx(D)
    silver(ctx, orders=orders, members=members)
    first = run_gold(ctx_prev, "features", "rfm")["rfm"]["tier_changes"]
    assert first == {"previous_as_of_date": None, "up": 0, "down": 0}
    assert _changes(ctx, PREV) == {}
    figures = run_gold(ctx, "features", "rfm")["rfm"]["tier_changes"]
    expected = {
        "A": ("up", "bronze", "silver", PREV),
        "B": ("down", "silver", "bronze", PREV),
        "C": ("up", "bronze", "gold", PREV),
    }
    assert _changes(ctx, D) == expected
    assert figures == {"previous_as_of_date": PREV, "up": 2, "down": 1}
    run_gold(ctx, "features", "rfm")  # a rerun of D: the same rows, nothing doubled
    assert _changes(ctx, D) == expected
    assert ctx.lake.read("gold/member_tier_changes").count() == 3

    # Another lake: D first, D-1 backfilled later, then D rerun: the nightly rows again.
    other = with_paths(settings, lake=tmp_path / "lake2")
    late_d, late_prev = make_ctx(D, settings=other), make_ctx(PREV, settings=other)
    silver(late_d, orders=orders, members=members)
    run_gold(late_d, "features", "rfm")
    assert _changes(late_d, D) == {}  # nothing earlier to compare with yet
    run_gold(late_prev, "features", "rfm")
    assert _changes(late_prev, PREV) == {}
    run_gold(late_d, "features", "rfm")
    assert _changes(late_d, D) == expected


def test_near_next_tier_due_and_aov_trend(make_ctx, silver, run_gold):
    orders = [
        order("g1", "G", -5, 1700.0),  # next: silver at 2000; 1700 >= 0.85 x 2000
        order("h1", "H", -5, 1699.99),  # just short of it
        order("i1", "I", -5, 9000.0),  # silver; next: gold at 10000
        order("e1", "E", -5, 15000.0),  # gold: no next tier
        # purchase cycle: median gap 30, tolerance 0.2 x 30 = 6 days
        *[order(f"k{i}", "K", off, 10.0) for i, off in enumerate((-90, -60, -30))],
        *[order(f"l{i}", "L", off, 10.0) for i, off in enumerate((-96, -66, -36))],
        *[order(f"m{i}", "M", off, 10.0) for i, off in enumerate((-97, -67, -37))],
        *[order(f"j{i}", "J", off, 10.0) for i, off in enumerate((-1, -1))],  # gap 0
        # AOV: [D-89, D] orders 100 and 300 (AOV 200), [D-179, D-90] one of 100
        order("n1", "N", -10, 100.0),
        order("n2", "N", -89, 300.0),
        order("n3", "N", -90, 100.0),
        order("o1", "O", -10, 100.0),  # nothing in the earlier 90 days
    ]
    silver(ctx := make_ctx(D), orders=orders, members=[member(m) for m in "GHIEKLMJNO"])
    run_gold(ctx, "features", "value", "rfm", "tags")
    feats = rows_by_member(ctx, "gold/member_features")
    assert (feats["G"]["next_tier"], float(feats["G"]["next_tier_min_monetary"])) == (
        "silver",
        2000.0,
    )
    assert (feats["I"]["next_tier"], float(feats["I"]["next_tier_min_monetary"])) == (
        "gold",
        10000.0,
    )
    assert (feats["E"]["next_tier"], feats["E"]["next_tier_min_monetary"]) == (None, None)
    tags = ctx.lake.read("gold/member_tags").filter(F.col("as_of_date") == F.lit(D)).collect()
    holders = {t: {r["member_id"] for r in tags if r["tag"] == t} for t in {r["tag"] for r in tags}}
    assert holders["near_next_tier"] == {"G", "I"}
    assert holders["purchase_cycle_due"] == {"K", "L"}
    assert feats["N"]["frequency_prev_90d"] == 1
    assert feats["N"]["aov_trend"] == pytest.approx(2.0)
    assert feats["N"]["monetary_trend"] == pytest.approx(4.0)
    assert feats["O"]["aov_trend"] is None
    rfm = rows_by_member(ctx, "gold/member_rfm")
    assert rfm["N"]["aov_trend"] == pytest.approx(2.0) and rfm["O"]["aov_trend"] is None


def test_upgrade_nudge_segment_selects_near_next_tier_buyers(spark, make_ctx, silver, run_gold):
    orders = [
        order("g1", "G", -5, 1700.0),  # near silver, bought in 90 days: nudged
        order("q1", "Q", -200, 1800.0),  # near silver, no purchase in 90 days: not nudged
        order("h1", "H", -5, 1000.0),  # far from silver
    ]
    silver(ctx := make_ctx(D), orders=orders, members=[member(m) for m in "GQH"])
    run_gold(ctx, "features", "value", "rfm", "tags", "lifecycle")

    def on_d(name: str):
        return ctx.lake.read(name).where(F.col("as_of_date") == F.lit(D))

    conf = load_segments(spark=spark)
    nudge = next(s for s in conf.segments if s.name == "upgrade_nudge")
    view = segment_view(
        with_value(ctx, on_d("gold/member_features")),
        on_d("gold/member_rfm"),
        on_d("gold/member_lifecycle"),
        on_d("gold/member_tags"),
        ctx.lake.read("silver/members"),
    )
    validate_predicates(view, conf, "conf/segments.yaml")
    assert {r["member_id"] for r in view.where(F.expr(nudge.where)).collect()} == {"G"}


def _items(o: dict, n: int) -> dict:
    return {**o, "n_items": n}


def test_basket_attach_rate(make_ctx, silver, run_gold):
    orders = [
        _items(order("p1", "A", 0, 10.0), 3),
        _items(order("p2", "B", -29, 10.0), 1),
        _items(order("p3", None, -5, 10.0), 2),  # anonymous purchases count too
        _items(order("r1", "A", -1, 10.0, txn="RETURN"), 7),  # not a purchase
        _items(order("p4", "A", -30, 10.0), 9),  # outside [D-29, D]
        _items(order("p5", "A", 1, 10.0), 9),  # after D
    ]
    orders.append(dict(orders[0]))  # a re-sent copy counts once
    silver(ctx := make_ctx(D), orders=orders, members=[member("A"), member("B")])
    figures = run_gold(ctx, "features", "kpis")["kpis"]
    k = ctx.lake.read("gold/kpi_daily").collect()[0]
    assert (k["basket_orders_30d"], k["basket_items_30d"]) == (3, 6)
    assert k["basket_attach_rate"] == 2.0
    assert figures["basket_attach_rate"] == 2.0


def test_basket_attach_rate_null_without_orders(make_ctx, silver, run_gold):
    silver(ctx := make_ctx(D), orders=[order("p1", "A", -40, 10.0)], members=[member("A")])
    run_gold(ctx, "features", "kpis")
    k = ctx.lake.read("gold/kpi_daily").collect()[0]
    assert (k["basket_orders_30d"], k["basket_items_30d"], k["basket_attach_rate"]) == (0, 0, None)
