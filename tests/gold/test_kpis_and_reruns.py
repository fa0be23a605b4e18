"""gold/kpi_daily against hand counts; reruns and backfills touch only their own date."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from jobs.config import with_paths
from tests.gold.conftest import GOLD_TABLES, D, day, member, order


def _xref(source: str, key: str, member_id: str | None, first: int) -> dict:
    return {"source": source, "source_key": key, "member_id": member_id, "first_seen": day(first)}


def _manifest(f: str, offset: int, total: int, bad: int) -> dict:
    return {
        "source": "pos",
        "business_date": day(offset),
        "_source_file": f,
        "rows_total": total,
        "rows_bad": bad,
    }


def test_kpi_daily(make_ctx, silver, write_table, run_gold):
    ctx = make_ctx(D)
    orders = [
        order("a1", "A", 0, 10.0),
        order("b1", "B", -10, 10.0),
        order("b2", "B", -200, 10.0, channel="web"),
        order("c1", "C", -40, 10.0),
        order("n1", None, -29, 10.0),  # anonymous POS sale inside 30 days
        order("n2", None, -30, 10.0),  # ...and one outside
        order("r1", "C", -1, 10.0, txn="RETURN"),  # a return is not a purchase
        order("w1", None, -2, 10.0, channel="web"),  # online: not a POS purchase
    ]
    members = [member("A", 0), member("B", -100), member("C", -50), member("E", -5)]
    members.append(member("F", 1))  # first seen after D
    silver(ctx, orders=orders, members=members)
    write_table(
        ctx,
        "silver/member_xref",
        [
            _xref("crm", "c1", "A", -3),
            _xref("pos_card", "k1", "A", -2),
            _xref("web_anon", "a1", "A", 0),
            _xref("crm", "c2", "B", -100),
            _xref("web_anon", "a2", None, -9),  # anonymous devices share nothing
            _xref("web_anon", "a3", None, -9),
            _xref("crm", "c3", "C", -50),
            _xref("pos_card", "k9", "C", 1),  # seen after D
        ],
    )
    write_table(
        ctx,
        "meta/ingest_manifest",
        [
            _manifest("pos/a.csv", 0, 100, 5),
            _manifest("pos/b.csv", 0, 50, 0),
            _manifest("pos/c.csv", -1, 10, 10),
        ],
    )
    figures = run_gold(ctx, "features", "kpis")["kpis"]
    rows = ctx.lake.read("gold/kpi_daily").collect()
    assert len(rows) == 1
    k = rows[0].asDict()
    assert k["as_of_date"] == D
    assert (k["members_total"], k["members_new"]) == (4, 1)
    assert (k["members_active_30d"], k["active_30d_share"]) == (2, 0.5)
    assert (k["members_buyers_365d"], k["members_repeat_365d"]) == (3, 1)
    assert k["repurchase_rate"] == 1 / 3
    assert (k["members_omnichannel_365d"], k["cross_channel_share"]) == (1, 1 / 3)
    assert (k["source_identities"], k["source_identities_shared"]) == (7, 3)
    assert k["identity_merge_rate"] == 3 / 7
    assert (k["pos_purchases_30d"], k["pos_member_purchases_30d"]) == (3, 2)
    assert k["pos_member_share"] == 2 / 3
    assert (k["rows_received"], k["rows_quarantined"], k["quarantine_rate"]) == (150, 5, 5 / 150)
    assert figures["members_total"] == 4


def _snapshot(ctx, as_of: dt.date) -> dict[str, list[str]]:
    out = {}
    for name in GOLD_TABLES:
        df = ctx.lake.read(name).filter(F.col("as_of_date") == F.lit(as_of))
        out[name] = sorted(repr(sorted(r.asDict().items())) for r in df.collect())
    return out


def _scenario() -> tuple[list[dict], list[dict]]:
    orders = [
        order("o1", "A", -40, 100.0),
        order("o2", "A", -1, 50.0, channel="app", time="22:00:00"),
        order("o3", "B", -300, 30.0, gross=50.0, discount=20.0),
        order("o4", "C", 0, 20.0),
    ]
    return orders, [member("A"), member("B"), member("C"), member("N", 0)]


def test_rerun_replaces_only_its_date(make_ctx, silver, run_gold):
    prev = D - dt.timedelta(days=1)
    orders, members = _scenario()
    ctx_prev, ctx = make_ctx(prev), make_ctx(D)
    silver(ctx, orders=orders, members=members)
    run_gold(ctx_prev)
    run_gold(ctx)
    before_prev, before_d = _snapshot(ctx, prev), _snapshot(ctx, D)
    assert before_prev["gold/member_rfm"] and before_d["gold/member_tags"]
    # Same data again: identical D, nothing doubled.
    run_gold(ctx)
    assert _snapshot(ctx, D) == before_d
    # New data dated D: D changes, D-1 does not.
    silver(ctx, orders=[*orders, order("o5", "B", 0, 5000.0)], members=members)
    run_gold(ctx)
    assert _snapshot(ctx, prev) == before_prev
    after_d = _snapshot(ctx, D)
    assert after_d["gold/member_rfm"] != before_d["gold/member_rfm"]
    rfm_b = (
        ctx.lake.read("gold/member_rfm")
        .filter((F.col("as_of_date") == F.lit(D)) & (F.col("member_id") == "B"))
        .collect()
    )
    assert len(rfm_b) == 1 and rfm_b[0]["recency_days"] == 0
    assert ctx.lake.read("gold/kpi_daily").count() == 2


def test_backfill_reproduces_nightly(make_ctx, silver, run_gold, settings, tmp_path):
    """Nightly D-1 then D, versus D first and D-1 backfilled later: same D-1 tables."""
    prev = D - dt.timedelta(days=1)
    orders, members = _scenario()
    nightly_prev = make_ctx(prev)
    silver(nightly_prev, orders=orders, members=members)
    run_gold(nightly_prev)
    other = with_paths(settings, lake=tmp_path / "lake2")
    late_d, late_prev = make_ctx(D, settings=other), make_ctx(prev, settings=other)
    silver(late_d, orders=orders, members=members)
    run_gold(late_d)
    run_gold(late_prev)
    assert _snapshot(late_prev, prev) == _snapshot(nightly_prev, prev)
