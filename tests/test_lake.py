"""jobs.lake.Merge: the one MERGE builder, run on real Delta tables."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from jobs.config import PROJECT_ROOT
from jobs.lake import Lake

SCHEMA = "k int, v string, op string"


def _table(spark, root: Path, rows: list[tuple]) -> Lake:
    lake = Lake(spark, root / "lake")
    lake.overwrite(spark.createDataFrame(rows, "k int, v string"), "meta/t", conform_schema=False)
    return lake


def _rows(lake: Lake) -> list[tuple]:
    rows = lake.read("meta/t").collect()
    return sorted(((r["k"], r["v"]) for r in rows), key=lambda r: (r[0] is None, r[0] or 0, r[1]))


def merge_in_order(spark, root: Path) -> list[tuple]:
    """Delete, update, conditional insert and delete-by-source in one MERGE, null-safe
    keys. Also run on the JVM engine (tests/jvm/test_merge.py)."""
    lake = _table(spark, root, [(1, "a"), (2, "b"), (3, "c"), (None, "n")])
    source = spark.createDataFrame(
        [(1, "A", "upd"), (2, None, "del"), (4, "d", "ins"), (5, "e", "skip"), (None, "N", "upd")],
        SCHEMA,
    )
    (
        lake.merge_into(source, "meta/t", ["k"])
        .when_matched_delete("s.op = 'del'")
        .when_matched_update({"v": "s.v"})
        .when_not_matched_insert(["k", "v"], "s.op = 'ins'")
        .when_not_matched_by_source_delete("t.k = 3")
        .execute()
    )
    assert lake.version("meta/t") == 1  # one commit
    return _rows(lake)


def merge_with_filter(spark, root: Path) -> list[tuple]:
    """Plain ``=`` keys and a target filter (part of the match)."""
    lake = _table(spark, root, [(1, "a"), (2, "b"), (None, "n")])
    source = spark.createDataFrame([(1, "A", ""), (2, "B", ""), (None, "N", "")], SCHEMA)
    (
        lake.merge_into(source, "meta/t", ["k"], null_safe=False, target_filter="t.k >= 2")
        .when_matched_update(["v"])
        .when_not_matched_insert(["k", "v"])
        .execute()
    )
    return _rows(lake)


IN_ORDER = [(1, "A"), (4, "d"), (None, "N")]
# With ``=`` a null key matches nothing; a row outside the target filter is not updated
# but inserted (the caller's filter must cover every row the source can match).
WITH_FILTER = [(1, "A"), (1, "a"), (2, "B"), (None, "N"), (None, "n")]


def test_clauses_apply_in_order_with_null_safe_keys(spark, tmp_path):
    assert merge_in_order(spark, tmp_path) == IN_ORDER


def test_plain_keys_and_a_target_filter_narrow_the_match(spark, tmp_path):
    assert merge_with_filter(spark, tmp_path) == WITH_FILTER


def test_a_merge_needs_keys_and_a_clause(spark, tmp_path):
    lake = _table(spark, tmp_path, [(1, "a")])
    source = spark.createDataFrame([(1, "A", "")], SCHEMA)
    with pytest.raises(ValueError, match="key columns"):
        lake.merge_into(source, "meta/t", [])
    with pytest.raises(ValueError, match="WHEN clause"):
        lake.merge_into(source, "meta/t", ["k"]).execute()
    assert _rows(lake) == [(1, "a")]


def test_merge_statements_are_written_in_the_lake_module_only():
    """Jobs build MERGEs with Lake.merge_into, never as SQL of their own."""
    pattern = re.compile(r"MERGE\s+INTO", re.IGNORECASE)
    offenders = [
        str(path.relative_to(PROJECT_ROOT))
        for path in sorted((PROJECT_ROOT / "jobs").rglob("*.py"))
        if path.name != "lake.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


PII = "restricted/member_pii"


def _pii(spark, rows: list[tuple], extra: bool = False):
    """member_pii rows (member_id, name[, _op]); other declared columns null. ``extra``:
    also an undeclared column ``note`` (as a table written by an older release holds)."""
    from pyspark.sql import functions as F

    from jobs.schemas import table_schema

    schema = table_schema(PII)
    ops = len(rows[0]) == 3
    df = spark.createDataFrame(
        rows, "member_id string, name string" + (", _op string" if ops else "")
    )
    cols = [F.col(c) if c in df.columns else F.lit(None).cast(t).alias(c)
            for c, t in ((f.name, f.dataType) for f in schema.struct.fields)]  # fmt: skip
    if extra:
        cols.append(F.concat(F.lit("n-"), F.col("member_id")).alias("note"))
    return df.select(*cols, *(["_op"] if ops else []))


CHANGES = [("M2", "B", "upsert"), ("M3", None, "delete"), ("M9", "i", "upsert"),
           ("M7", None, "delete")]  # fmt: skip
AFTER = {"M1": ("a", "n-M1"), "M2": ("B", "n-M2"), "M4": ("d", "n-M4"), "M5": ("e", "n-M5"),
         "M6": ("f", "n-M6"), "M9": ("i", None)}  # fmt: skip


@pytest.mark.parametrize("rewrite", [True, False])
def test_apply_changes_by_merge_or_by_rewrite_leaves_the_same_table(
    spark, tmp_path, monkeypatch, rewrite
):
    """Upserts (a changed and a new key) and deletes (a present and an absent key) on a
    table of three files holding an undeclared column: the same rows and columns by a
    MERGE and by the whole-table rewrite, in one commit each."""
    lake = Lake(spark, tmp_path / "lake")
    for part in (
        [("M1", "a"), ("M2", "b")],
        [("M3", "c"), ("M4", "d")],
        [("M5", "e"), ("M6", "f")],
    ):
        mode = "append" if lake.exists(PII) else "overwrite"
        _pii(spark, part, extra=True).write.format("delta").mode(mode).save(lake.path(PII))
    monkeypatch.setattr(Lake, "_rewrite_pays", lambda self, name, src, rows: rewrite)
    before = lake.version(PII)
    lake.apply_changes(_pii(spark, CHANGES), PII)
    assert lake.version(PII) == before + 1
    rows = {r.member_id: (r.name, r.note) for r in lake.read(PII).collect()}
    assert rows == AFTER


def test_the_rewrite_is_chosen_when_the_changes_touch_most_files(spark, tmp_path):
    """Changes at least a quarter as many as the table's files: rewrite; one change
    against eight files: MERGE. A count given by the caller is used as it is."""
    lake = Lake(spark, tmp_path / "lake")
    for i in range(8):
        mode = "append" if lake.exists(PII) else "overwrite"
        _pii(spark, [(f"M{i}", "x")]).write.format("delta").mode(mode).save(lake.path(PII))
    one = _pii(spark, [("M1", "y", "upsert")])
    two = _pii(spark, [("M1", "y", "upsert"), ("M2", None, "delete")])
    assert not lake._rewrite_pays(PII, one, None)
    assert lake._rewrite_pays(PII, two, None)
    assert lake._rewrite_pays(PII, one, 2)


def test_the_rewrite_matches_null_keys_as_the_merge_does(spark, tmp_path, monkeypatch):
    """A null key is a key (``null_safe``): its row is replaced, not doubled."""
    lake = Lake(spark, tmp_path / "lake")
    _pii(spark, [("M1", "a"), (None, "n")]).write.format("delta").save(lake.path(PII))
    monkeypatch.setattr(Lake, "_rewrite_pays", lambda self, name, src, rows: True)
    lake.apply_changes(_pii(spark, [(None, "N", "upsert"), ("M1", None, "delete")]), PII)
    assert [(r.member_id, r.name) for r in lake.read(PII).collect()] == [(None, "N")]


def test_share_of_files_in_ranges_from_the_log_statistics(spark, tmp_path):
    """Two files of order ids of two days: a range within one day's reads half the
    files, a range over both all of them; a column without statistics skips nothing."""
    lake = Lake(spark, tmp_path / "lake")
    name = "bronze/pos_lines_test"
    for day in ("20261101", "20261102"):
        rows = spark.createDataFrame([(f"{day}{i:04d}", i) for i in range(3)], "order_id string, n int")
        mode = "append" if lake.exists(name) else "overwrite"
        rows.coalesce(1).write.format("delta").mode(mode).save(lake.path(name))
    assert lake.share_of_files_in_ranges(name, {"order_id": ("202611010000", "202611010002")}) == 0.5
    assert lake.share_of_files_in_ranges(name, {"order_id": ("202611010001", "202611020001")}) == 1.0
    assert lake.share_of_files_in_ranges(name, {"order_id": ("2027", "2028")}) == 0.0
    assert lake.share_of_files_in_ranges(name, {"nothing": (1, 2)}) == 1.0


def test_an_overwrite_keeps_the_declared_partitioning(spark, tmp_path):
    """A whole-table rebuild (silver's full run, a FORMAT change) of an existing
    partitioned table stays partitioned; one left unpartitioned (by an overwrite that
    named no partition columns, as before this test) gets its declared partitioning back.
    Unpartitioned, every night's MERGE rewrote the whole table (1M members: the night's
    web events 1.7 -> 24-27 s, orders and lines 3.6 -> 13.6-14.9 s)."""
    from jobs.schemas import table_schema

    lake = Lake(spark, tmp_path / "lake")
    name = "gold/value_model"  # partitioned by as_of_date; rewritten whole every night
    schema = table_schema(name).struct

    def rows(day: str):
        row = (dt.date.fromisoformat(day), "bg_nbd", {"r": 1.0}, "day", 10, -1.5, True, None)
        return spark.createDataFrame([row], schema)

    def partitioning() -> list[str]:
        return lake.delta_table(name).metadata().partition_columns

    lake.overwrite(rows("2026-06-01"), name)
    assert partitioning() == ["as_of_date"]
    lake.overwrite(rows("2026-06-02"), name)  # an existing table, overwritten
    assert partitioning() == ["as_of_date"]
    # An unpartitioned copy (as an old overwrite left it) is partitioned again.
    plain = spark.createDataFrame([], schema).unionByName(
        lake.read(name).select(*schema.fieldNames())
    )
    plain.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(
        lake.path(name)
    )
    assert partitioning() == []
    lake.overwrite(rows("2026-06-03"), name)
    assert partitioning() == ["as_of_date"]
    assert [r["as_of_date"].isoformat() for r in lake.read(name).collect()] == ["2026-06-03"]
    # Undeclared (state) tables keep what they have.
    lake.overwrite(spark.createDataFrame([(1, "a")], "k int, v string"), "meta/t",
                   conform_schema=False)  # fmt: skip
    assert lake.partition_columns("meta/t", declared=False) == []


def _order(spark, order_id: str, member: str | None):
    """One silver/orders row (the columns a test does not need left null)."""
    from jobs.schemas import table_schema

    schema = table_schema("silver/orders")
    values = {"order_id": order_id, "channel": "store", "member_id": member,
              "order_month": "2026-06", "order_date": dt.date(2026, 6, 1)}  # fmt: skip
    return spark.createDataFrame([tuple(values.get(c) for c in schema.columns)], schema.struct)


def test_tables_declared_with_deletion_vectors_get_them(spark, tmp_path):
    """silver/orders (``deletion_vectors: true`` in schemas/silver.yaml) is created with
    them; a table that is not declared so is not; a declared table written before (no
    property in its log) gets them at its next MERGE, which then marks the row it
    replaces instead of rewriting its file."""
    from jobs.lake import deleted_rows, live_rows, wants_deletion_vectors

    lake = Lake(spark, tmp_path / "lake")
    assert wants_deletion_vectors("silver/orders") and not wants_deletion_vectors("meta/t")
    lake.overwrite(_order(spark, "o1", "M1").unionByName(_order(spark, "o2", "M2")),
                   "silver/orders")  # fmt: skip
    assert lake.has_deletion_vectors("silver/orders")
    assert "deletionVectors" in lake.delta_table("silver/orders").protocol().reader_features
    _table(spark, tmp_path, [(1, "a")])
    assert not lake.has_deletion_vectors("meta/t")

    old = Lake(spark, tmp_path / "old")  # as a lake written before the declaration
    _order(spark, "o1", "M1").unionByName(_order(spark, "o2", "M2")).write.format(
        "delta"
    ).save(old.path("silver/orders"))
    assert not old.has_deletion_vectors("silver/orders")
    files = set(old.delta_table("silver/orders").file_uris())
    (
        old.merge_into(_order(spark, "o1", "M9"), "silver/orders", ["order_id", "channel"])
        .when_matched_update(["member_id"])
        .execute()
    )  # fmt: skip
    table = old.delta_table("silver/orders")
    assert old.has_deletion_vectors("silver/orders")
    assert files <= set(table.file_uris())  # the row's file kept, its old row marked
    assert deleted_rows(table) == 1 and live_rows(table) == 2
    got = {r["order_id"]: r["member_id"] for r in old.read("silver/orders").collect()}
    assert got == {"o1": "M9", "o2": "M2"}


def test_delta_arrow_reads_a_table_with_deletion_vectors(spark, tmp_path):
    """delta-rs's pyarrow dataset refuses a table with deletion vectors; delta_arrow
    reads it with the deleted rows left out, typed as the table declares."""
    import pyarrow as pa
    from deltalake import DeltaTable

    from jobs.lake import delta_arrow

    lake = Lake(spark, tmp_path / "lake")
    lake.overwrite(_order(spark, "o1", "M1").unionByName(_order(spark, "o2", "M2")),
                   "silver/orders")  # fmt: skip
    (
        lake.merge_into(_order(spark, "o1", "M9"), "silver/orders", ["order_id", "channel"])
        .when_matched_update(["member_id"])
        .execute()
    )  # fmt: skip
    path = lake.path("silver/orders")
    with pytest.raises(Exception, match="deletionVectors"):
        DeltaTable(path).to_pyarrow_table()
    data = delta_arrow(path)
    pairs = zip(data["order_id"].to_pylist(), data["member_id"].to_pylist(), strict=True)
    assert sorted(pairs) == [
        ("o1", "M9"), ("o2", "M2")]  # fmt: skip
    assert data.schema.field("order_date").type == pa.date32()
    assert delta_arrow(path, ["member_id"], version=0).column_names == ["member_id"]
    assert sorted(delta_arrow(path, ["member_id"], version=0)["member_id"].to_pylist()) == [
        "M1", "M2"]  # fmt: skip
