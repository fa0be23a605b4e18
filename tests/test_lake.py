"""jobs.lake.Merge: the one MERGE builder, run on real Delta tables."""

from __future__ import annotations

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
