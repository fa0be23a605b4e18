"""Incremental `orders` nights on hand-written bronze + xref: after every night the three
silver tables hold exactly the rows of a full rebuild from the same bronze and xref.

Bronze is changed the way ingest does it: one business date's rows replaced in one
commit (a new day, or a re-sent file), so only those dates are touched.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from jobs.engine import step_spark
from jobs.lake import deleted_rows, live_rows
from jobs.privacy.pii import hmac_py
from jobs.schemas import conform, table_schema
from jobs.silver import orders as orders_job
from jobs.silver import state as S
from jobs.silver.orders import WEB_KEYS, attach_member, build, run
from tests.identity.conftest import day, pos_row, rows, web_row
from tests.silver.conftest import write_xref

TABLES = ("silver/orders", "silver/order_lines", "silver/web_events")
KEYS = {
    "silver/orders": ("order_id", "channel"),
    "silver/order_lines": ("order_id", "channel", "line_no"),
    "silver/web_events": ("event_id",),
}


def _put(spark, ctx, name: str, d: int, data: list[dict]) -> None:
    """Replace business date ``day(d)`` of a bronze table with ``data``: only that date's
    files change, as when ingest takes in a new day or a re-sent file. (A delete and an
    append: Sail's replaceWhere refuses these local rows' timestamp zone.)"""
    schema = table_schema(name)
    # Ingest stamps every row of a new or re-sent file with its run's time.
    data = [{**r, "_ingested_at": dt.datetime.now()} for r in data]
    df = spark.createDataFrame(
        [tuple(r.get(c) for c in schema.columns) for r in data], schema.struct
    )
    if ctx.lake.exists(name):
        spark.sql(
            f"DELETE FROM delta.`{ctx.lake.path(name)}` "
            f"WHERE _business_date = DATE'{day(d).isoformat()}'"
        )
    ctx.lake.append(df, name)


def _text(v) -> str:
    return str(sorted(str(x) for x in v)) if isinstance(v, list) else str(v)


def _sorted_rows(df, name: str) -> list[tuple]:
    cols = table_schema(name).columns
    return sorted(tuple(_text(r[c]) for c in cols) for r in df.select(*cols).collect())


def assert_equals_full_rebuild(ctx) -> None:
    """The tables equal build() over all bronze dated <= D and the current xref."""
    lake, d = ctx.lake, ctx.as_of
    pos = lake.read("bronze/pos_lines").filter(F.col("_business_date") <= F.lit(d))
    web = lake.read("bronze/web_events").filter(F.col("_business_date") <= F.lit(d))
    expected = build(pos, web, lake.read("silver/member_xref"), ctx.pii_key)
    for name, exp in zip(TABLES, expected, strict=True):
        # One row per key (the gold features count rows as orders and lines).
        keys = KEYS[name]
        assert lake.read(name).groupBy(*keys).count().filter("count > 1").count() == 0, name
        got = _sorted_rows(lake.read(name), name)
        want = _sorted_rows(conform(exp, name), name)
        assert got == want, name


def _members(ctx, name: str, key: str) -> dict[str, str | None]:
    return {r[key]: r["member_id"] for r in rows(ctx, name)}


def _event_members(ctx) -> dict[str, str | None]:
    """Each silver event's member, looked up through the current xref as readers do."""
    events = attach_member(
        ctx.lake.read("silver/web_events"), ctx.lake.read("silver/member_xref"), WEB_KEYS
    )
    assert "member_id" not in ctx.lake.read("silver/web_events").columns
    return {r["event_id"]: r["member_id"] for r in events.collect()}


@pytest.fixture(params=["in_list", "join"])
def nights(request, spark, make_ctx, monkeypatch):
    """Four nights over one lake; returns (ctx per night, figures per night). Changed
    identities are looked up by literal IN lists, or by a join (many changes)."""
    if request.param == "join":
        monkeypatch.setattr("jobs.silver.orders.MAX_IN_LIST", 0)
    sessions: list[tuple[str, object]] = []  # (mode, the session the run's work went to)
    for mode in ("_incremental", "_full"):
        inner = getattr(orders_job, mode)

        def recorded(ctx, *args, _inner=inner, _mode=mode):
            sessions.append((_mode.strip("_"), ctx.spark))
            assert ctx.lake.spark is ctx.spark
            return _inner(ctx, *args)

        monkeypatch.setattr(orders_job, mode, recorded)
    ctx0 = make_ctx(day(0))
    key = ctx0.pii_key
    phone = hmac_py("13700000001", key)
    ctxs, figs = [], []

    def night(d: int):
        ctx = make_ctx(day(d))
        figs.append(run(ctx))
        ctxs.append(ctx)
        assert_equals_full_rebuild(ctx)
        return figs[-1]

    # Night 0: first run (no state): full.
    _put(spark, ctx0, "bronze/pos_lines", 0, [
        pos_row("o1", 0, 1, member_card_no="K1", amount=Decimal("10.00")),
        pos_row("o1", 0, 2, member_card_no="K1", amount=Decimal("20.00"), category="美妆"),
        pos_row("o2", 0, 1, phone="137-0000-0001", amount=Decimal("5.00")),
    ])  # fmt: skip
    _put(spark, ctx0, "bronze/web_events", 0, [
        web_row("e1", "a1", 0, event_type="purchase", user_id="u1", order_id="w1",
                revenue=Decimal("50.00"), channel="web"),
        web_row("e2", "a2", 0),
    ])  # fmt: skip
    write_xref(spark, ctx0, [("pos_card", "K1", "M1"), ("pos_phone", phone, "M2"),
                        ("web_user", "u1", "M1"), ("web_anon", "a1", "M1"),
                        ("web_anon", "a2", None)])  # fmt: skip
    night(0)

    # Night 1: a new day; device a2 logs in as M2 (its old event e2 gets M2 too);
    # o1 gets a third line in day 1's file (an order in two dates' files).
    _put(spark, ctx0, "bronze/pos_lines", 1, [
        pos_row("o3", 1, 1, member_card_no="K3", amount=Decimal("7.00")),
        pos_row("o1", 1, 3, member_card_no="K1", amount=Decimal("1.00"),
                order_date=day(0), order_ts=dt.datetime(2026, 11, 1, 10, 0)),
    ])  # fmt: skip
    _put(spark, ctx0, "bronze/web_events", 1, [
        web_row("e3", "a2", 1, event_type="purchase", order_id="w2", revenue=Decimal("9.90"),
                channel="app"),
    ])  # fmt: skip
    write_xref(spark, ctx0, [("pos_card", "K1", "M1"), ("pos_phone", phone, "M2"),
                        ("pos_card", "K3", "M3"), ("web_user", "u1", "M1"),
                        ("web_anon", "a1", "M1"), ("web_anon", "a2", "M2")])  # fmt: skip
    night(1)

    # Night 2: day 0's files re-sent: o1's line 2 changed, o2 gone; e2 gone, e1 redelivered
    # with its order's revenue corrected. M3 and M2 merged into M1 (re-key).
    _put(spark, ctx0, "bronze/pos_lines", 0, [
        pos_row("o1", 0, 1, member_card_no="K1", amount=Decimal("10.00")),
        pos_row("o1", 0, 2, member_card_no="K1", amount=Decimal("25.00"), category="美妆"),
    ])  # fmt: skip
    _put(spark, ctx0, "bronze/web_events", 0, [
        web_row("e1", "a1", 0, event_type="purchase", user_id="u1", order_id="w1",
                revenue=Decimal("55.00"), channel="web"),
    ])  # fmt: skip
    _put(spark, ctx0, "bronze/pos_lines", 2, [pos_row("o4", 2, 1)])
    write_xref(spark, ctx0, [("pos_card", "K1", "M1"), ("pos_phone", phone, "M1"),
                        ("pos_card", "K3", "M1"), ("web_user", "u1", "M1"),
                        ("web_anon", "a1", "M1"), ("web_anon", "a2", "M1")])  # fmt: skip
    night(2)

    # Night 3: the same date again, nothing new.
    night(2)
    return ctxs, figs, sessions


def test_nights_equal_full_rebuild(nights, spark):
    ctxs, figs, sessions = nights
    assert [f["mode"] for f in figs] == ["full", "incremental", "incremental", "noop"]
    # engine.hash_join_nights (default [orders]): the nights' joins are hash joins, the
    # full run keeps the run's session (sort-merge joins, which spill).
    hashed = step_spark(spark, "orders", ["orders"])
    assert hashed is not spark
    assert [mode for mode, _ in sessions] == ["full", "incremental", "incremental"]
    assert [s is spark for _, s in sessions] == [True, False, False]
    assert all(s is hashed for _, s in sessions[1:])
    # Night 1 read only day 1 (and day 0 for o1, whose lines sit in two dates' files).
    assert figs[1]["touched_dates"] == {"pos_lines": 1, "web_events": 1}
    assert figs[1]["extra_pos_dates"] == 1
    assert figs[1]["rows_in"] == 3 and "web_events_rekeyed" not in figs[1]  # events keep keys
    ctx = ctxs[-1]
    orders = {r["order_id"]: r for r in rows(ctx, "silver/orders")}
    assert set(orders) == {"o1", "o3", "o4", "w1", "w2"}  # o2 went with the re-sent file
    assert orders["o1"]["net_amount"] == Decimal("36.00") and orders["o1"]["n_lines"] == 3
    assert orders["w1"]["net_amount"] == Decimal("55.00")
    assert {k: o["member_id"] for k, o in orders.items()} == {
        "o1": "M1",
        "o3": "M1",
        "o4": None,
        "w1": "M1",
        "w2": "M1",
    }
    assert _event_members(ctx) == {"e1": "M1", "e3": "M1"}
    lines = rows(ctx, "silver/order_lines")
    assert sorted((r["order_id"], r["line_no"]) for r in lines) == [
        ("o1", 1), ("o1", 2), ("o1", 3), ("o3", 1), ("o4", 1), ("w1", 1), ("w2", 1),
    ]  # fmt: skip
    assert "member_id" not in ctx.lake.read("silver/order_lines").columns  # its order's
    # Each order's line_totals hold its lines' amounts, re-keyed or not.
    for o in orders.values():
        mine = [r for r in lines if (r["order_id"], r["channel"]) == (o["order_id"], o["channel"])]
        assert sum(t["net_amount"] for t in o["line_totals"]) == sum(r["net_amount"] for r in mine)
    # Night 2: days 0 and 2 touched; o3 re-keyed M3 -> M1 without reading day 1.
    assert figs[2]["touched_dates"] == {"pos_lines": 2, "web_events": 1}
    assert figs[2]["orders_deleted"] == 1 and figs[2]["orders_rekeyed"] >= 1
    assert figs[3]["rows_in"] == 0 and figs[3]["rows_out"] == 0
    # The order tables are as the step left them (a noop night too): readers need not
    # deduplicate them. Another writer's commit (an exact copy of a row) ends that.
    from jobs.silver.state import one_row_per_key

    assert one_row_per_key(ctx.lake, "silver/orders")
    assert one_row_per_key(ctx.lake, "silver/order_lines")
    ctx.lake.append(ctx.lake.read("silver/orders").limit(1), "silver/orders")
    assert not one_row_per_key(ctx.lake, "silver/orders")
    assert one_row_per_key(ctx.lake, "silver/order_lines")


def test_backfill_then_catch_up_lost_history_and_switch_off(
    spark, make_ctx, write_bronze, tmp_path, monkeypatch
):
    ctx = make_ctx(day(1))
    write_bronze(ctx, [], [pos_row("o1", 0), pos_row("o2", 1)], [web_row("e1", "a1", 1)])
    write_xref(spark, ctx, [("web_anon", "a1", "M1")])
    assert run(ctx)["mode"] == "full"
    # A backfill of day 0: a rebuild from bronze dated <= day 0 (the pipeline runs it on a
    # scratch copy of silver: tests/silver/test_backfill.py; here the step alone).
    back = make_ctx(day(0))
    figs = run(back)
    assert figs["mode"] == "full"
    assert figs["mode_reason"].startswith("backfill")
    assert_equals_full_rebuild(back)
    assert {r["order_id"] for r in rows(back, "silver/orders")} == {"o1"}
    assert rows(back, "silver/web_events") == []
    # The next night catches up incrementally.
    figs = run(make_ctx(day(1)))
    assert (figs["mode"], figs["touched_dates"]) == (
        "incremental", {"pos_lines": 1, "web_events": 1},
    )  # fmt: skip
    assert_equals_full_rebuild(make_ctx(day(1)))
    # An earlier version that cannot be read any more (vacuumed): full, not wrong.
    st = S.load_state(ctx.lake)
    st.pos.version = 10_000
    st.pos.digests[day(1).isoformat()] = "changed"
    S.save_state(ctx.lake, st, "x")
    figs = run(make_ctx(day(1)))
    assert figs["mode"] == "full" and "unreadable" in figs["mode_reason"]
    # That rebuild of existing tables keeps their partitioning (an overwrite that named
    # none left them flat, and every later night's MERGE rewrote them whole).
    for name in TABLES:
        declared = list(table_schema(name).partition_by)
        assert ctx.lake.delta_table(name).metadata().partition_columns == declared, name
    # A compaction rewrites bronze files, not rows: nothing to do.
    from deltalake import DeltaTable

    schema = table_schema("bronze/pos_lines")
    row = {**pos_row("o9", 1), "_ingested_at": dt.datetime.now()}
    one = spark.createDataFrame([tuple(row.get(c) for c in schema.columns)], schema.struct)
    ctx.lake.append(one, "bronze/pos_lines")  # a second file in day 1
    assert run(make_ctx(day(1)))["mode"] == "incremental"
    pos = DeltaTable(ctx.lake.path("bronze/pos_lines"))
    before = pos.version()
    pos.optimize.compact()
    assert DeltaTable(ctx.lake.path("bronze/pos_lines")).version() > before
    assert run(make_ctx(day(1)))["mode"] == "noop"
    # Switched off in conf/silver.yaml: full every night.
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "silver.yaml").write_text("silver:\n  incremental: false\n", encoding="utf-8")
    monkeypatch.setattr("jobs.config.CONF_DIR", conf)
    assert run(make_ctx(day(1)))["mode"] == "full"
    assert_equals_full_rebuild(make_ctx(day(1)))


def test_only_orders_whose_member_changes_are_rekeyed(spark, make_ctx, monkeypatch):
    """A night moves a phone to another member, but the one order holding it is found by
    its card first: its member stays, and the re-keying writes nothing (the table gets
    no commit from it). The next night the card moves: that order is rewritten."""
    import jobs.silver.orders as job

    calls: list[int] = []
    original = job.rekey_rows

    def counted(lake, src, *args, **kwargs):
        calls.append(src.count())
        return original(lake, src, *args, **kwargs)

    monkeypatch.setattr(job, "rekey_rows", counted)
    ctx = make_ctx(day(0))
    phone = hmac_py("13700000001", ctx.pii_key)
    _put(spark, ctx, "bronze/pos_lines", 0,
         [pos_row("o1", 0, 1, member_card_no="K1", phone="137-0000-0001")])  # fmt: skip
    _put(spark, ctx, "bronze/web_events", 0, [web_row("e1", "a1", 0)])
    write_xref(spark, ctx, [("pos_card", "K1", "M1"), ("pos_phone", phone, "M2"),
                            ("web_anon", "a1", None)])  # fmt: skip
    assert run(ctx)["mode"] == "full"
    assert _members(ctx, "silver/orders", "order_id") == {"o1": "M1"}

    night = make_ctx(day(1))
    _put(spark, night, "bronze/pos_lines", 1, [pos_row("o2", 1, 1, member_card_no="K2")])
    write_xref(spark, night, [("pos_card", "K1", "M1"), ("pos_phone", phone, "M3"),
                              ("pos_card", "K2", "M3"), ("web_anon", "a1", None)])  # fmt: skip
    before = night.lake.version("silver/orders")
    figs = run(night)
    assert figs["mode"] == "incremental" and figs["identities_changed"] == 1
    assert figs["orders_rekeyed"] == 0 and calls == []
    assert night.lake.version("silver/orders") == before + 1  # the night's order, merged
    assert _members(night, "silver/orders", "order_id") == {"o1": "M1", "o2": "M3"}
    assert_equals_full_rebuild(night)

    night = make_ctx(day(2))
    _put(spark, night, "bronze/pos_lines", 2, [pos_row("o3", 2, 1, member_card_no="K2")])
    write_xref(spark, night, [("pos_card", "K1", "M3"), ("pos_phone", phone, "M3"),
                              ("pos_card", "K2", "M3"), ("web_anon", "a1", None)])  # fmt: skip
    files_before = set(night.lake.delta_table("silver/orders").file_uris())
    figs = run(night)
    assert figs["orders_rekeyed"] == 1 and calls == [1]
    assert _members(night, "silver/orders", "order_id") == {"o1": "M3", "o2": "M3", "o3": "M3"}
    assert_equals_full_rebuild(night)
    # With deletion vectors (schemas/silver.yaml) the re-keying rewrote no file: o1's old
    # row stays in its file, marked deleted, and its new row sits in a file of its own.
    orders = night.lake.delta_table("silver/orders")
    assert night.lake.has_deletion_vectors("silver/orders")
    assert files_before <= set(orders.file_uris())
    assert deleted_rows(orders) == 1 and live_rows(orders) == 3


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("after", [1, 3, 4])
def test_crash_mid_night_then_rerun_equals_full(spark, make_ctx, monkeypatch, after):
    """An incremental night dies after its ``after``-th write (events, orders, lines,
    then the orders' re-keying, the last): every table stays readable and the rerun ends
    clean."""
    import jobs.silver.orders as job

    ctx = make_ctx(day(1))
    _put(spark, ctx, "bronze/pos_lines", 0, [pos_row("o2", 0, 1, member_card_no="K2")])
    _put(spark, ctx, "bronze/pos_lines", 1, [pos_row("o1", 1, 1, member_card_no="K1"),
                                             pos_row("o4", 1, 1, member_card_no="K4")])  # fmt: skip
    _put(spark, ctx, "bronze/web_events", 1, [web_row("e1", "a1", 1)])
    write_xref(spark, ctx, [("pos_card", "K1", "M1"), ("pos_card", "K2", "M2"),
                            ("pos_card", "K4", "M4"), ("web_anon", "a1", None)])  # fmt: skip
    assert run(ctx)["mode"] == "full"
    # The night: day 1 re-sent without o4, a new day 2, and K2 merged into M1: o2, on
    # day 0 (not read again), is re-keyed M2 -> M1.
    _put(spark, ctx, "bronze/pos_lines", 1, [pos_row("o1", 1, 1, member_card_no="K1")])
    _put(spark, ctx, "bronze/pos_lines", 2, [pos_row("o3", 2, 1, member_card_no="K2")])
    _put(spark, ctx, "bronze/web_events", 2, [web_row("e2", "a1", 2, event_type="purchase",
                                                      order_id="w1", revenue=Decimal("1.00"))])  # fmt: skip
    write_xref(spark, ctx, [("pos_card", "K1", "M1"), ("pos_card", "K2", "M1"),
                            ("pos_card", "K4", "M4"), ("web_anon", "a1", "M1")])  # fmt: skip
    calls = {"n": 0}
    originals = {f: getattr(job, f) for f in ("upsert_rows", "rekey_rows")}

    def failing(original):
        def merge(*a, **kw):
            original(*a, **kw)
            calls["n"] += 1
            if calls["n"] == after:
                raise Crash(f"after merge {after}")

        return merge

    for f, original in originals.items():
        monkeypatch.setattr(job, f, failing(original))
    night = make_ctx(day(2))
    with pytest.raises(Crash):
        run(night)
    for name in TABLES:
        night.lake.read(name).count()
    for f, original in originals.items():
        monkeypatch.setattr(job, f, original)
    figs = run(night)
    assert figs["mode"] == "incremental"
    # Crashed after the re-keying: the rerun finds o2 already re-keyed and writes nothing.
    assert figs["orders_rekeyed"] == (0 if after == 4 else 1)
    assert_equals_full_rebuild(night)
    members = {"o1": "M1", "o2": "M1", "o3": "M1", "w1": "M1"}
    assert _members(night, "silver/orders", "order_id") == members
