"""first_copies (the dedup's first-copy marking), called as a transform: each of its three routes (no repeated key, a few
picked by an IN list, many joined to a ranking) marks the same first copies as a plain
Python reference."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from pyspark.sql import functions as F

from jobs.ingest import bronze_types
from jobs.ingest.bronze_types import first_copies

COLUMNS = "order_id string, line_no int, _business_date date, _source_file string, _line_no long"
COLUMNS_NAMES = ["order_id", "line_no", "_business_date", "_source_file", "_line_no"]


def _deliveries(repeats: int, seed: int = 3) -> list[tuple]:
    """40 keys (order_id, line_no); ``repeats`` of them delivered 2-3 times, in other
    files and days; with repeats, one key with a null order_id delivered twice."""
    rng = random.Random(seed)
    rows = []
    for k in range(40):
        copies = rng.randint(2, 3) if k < repeats else 1
        for c in range(copies):
            day = dt.date(2026, 11, 1 + rng.randint(0, 3))
            rows.append(
                (f"O{k % 20}", k // 20, day, f"f{rng.randint(0, 2)}-{c}.csv", rng.randint(1, 9))
            )
    if repeats:
        rows += [
            (None, 1, dt.date(2026, 11, 2), "g.csv", 1),
            (None, 1, dt.date(2026, 11, 1), "g.csv", 2),
        ]
    return rows


def _reference(rows: list[tuple]) -> dict[tuple, tuple[bool, str]]:
    """(is first, first copy's file) per delivered row, by (date, file, line) order; a key
    holding a null is never repeated."""
    first: dict[tuple, tuple] = {}
    for row in rows:
        key = row[:2]
        if None in key:
            continue
        pos = (row[2], row[3], row[4])
        if key not in first or pos < first[key][0]:
            first[key] = (pos, row[3])
    out = {}
    for row in rows:
        key, pos = row[:2], (row[2], row[3], row[4])
        if None in key:
            out[row] = (True, row[3])
        else:
            out[row] = (first[key][0] == pos, first[key][1])
    return out


@pytest.mark.parametrize(
    "repeats,max_in_list,few", [(0, 20_000, False), (6, 20_000, False), (6, 3, False), (6, 3, True)]
)
def test_first_copies_match_a_python_reference(spark, monkeypatch, repeats, max_in_list, few):
    monkeypatch.setattr(bronze_types, "MAX_IN_LIST_KEYS", max_in_list)
    rows = _deliveries(repeats)
    df = spark.createDataFrame(rows, COLUMNS)
    carry = {"_source_file": "first_file"}
    marked, all_first = first_copies(df, ["order_id", "line_no"], carry, few)
    assert all_first == (repeats == 0 and not few)
    got = {
        (r.order_id, r.line_no, r._business_date, r._source_file, r._line_no): (
            r._is_first,
            r.first_file,
        )
        for r in marked.collect()
    }
    assert marked.count() == len(rows)
    assert got == _reference(rows)
    assert sum(first for first, _ in got.values()) == 40 + (2 if repeats else 0)


@pytest.mark.parametrize(
    "repeats,prior_keys,max_in_list", [(0, 0, 20_000), (0, 3, 20_000), (6, 3, 20_000), (6, 3, 4)]
)
def test_split_flagged_flags_as_flagging_every_row(
    spark, monkeypatch, tmp_path, repeats, prior_keys, max_in_list
):
    """The suspects-only route (a key repeated in the batch or already in bronze) gives
    every row the flags that flag_conflicts on the whole batch gives it; above the IN
    list's size every row is flagged, and nothing is lost or doubled either way."""
    from jobs.ingest.job import split_flagged
    from jobs.sources import SOURCES

    monkeypatch.setattr(bronze_types, "MAX_IN_LIST_KEYS", max_in_list)
    dedup = SOURCES["pos"].dedup
    keys = list(dedup.key)
    rows = _deliveries(repeats)
    batch = spark.createDataFrame(rows, COLUMNS).withColumn("_content_hash", F.col("_source_file"))
    prior = None
    if prior_keys:  # keys 1.. already in bronze, one with the content of a copy of the batch
        prior_rows = [
            (f"O{k}", 0, "f0-0.csv" if k == 1 else "x", "old.csv")
            for k in range(1, prior_keys + 1)
        ]
        prior = spark.createDataFrame(
            prior_rows, "order_id string, line_no int, _content_hash string, _source_file string"
        )
    stays = {"_dup_reason": F.lit(None).cast("string"), "first_source_file": F.col("_source_file")}
    flag = lambda df, few: bronze_types.flag_conflicts(df, prior, dedup, few)  # noqa: E731
    marked, suspects = split_flagged(batch, keys, prior, True, flag, stays, str(tmp_path / "f"))
    want, _ = flag(batch, False)
    columns = [*COLUMNS_NAMES, "_dup_reason", "first_source_file"]

    def flags(df):
        got = [tuple(r[c] for c in columns) for r in df.select(*columns).collect()]
        return sorted(got, key=str)

    assert flags(marked) == flags(want)
    assert marked.count() == len(rows)
    repeated = want.filter(F.col("_dup_reason").isNotNull())
    if repeated.count():
        assert suspects is not None
        got = flags(suspects.filter(F.col("_dup_reason").isNotNull()))
        assert got == flags(repeated)
    else:
        assert suspects is None or suspects.filter(F.col("_dup_reason").isNotNull()).count() == 0


def test_route_splits_once_and_never_reads_an_earlier_batch(spark, tmp_path):
    """route: every row in exactly one part, ``_raw`` kept on the picked rows only, and a
    batch with nothing picked does not read the picked rows a batch before it wrote."""
    from jobs.ingest.job import route

    rows = [(f"E{i}", i, f"raw {i}") for i in range(30)]
    batch = spark.createDataFrame(rows, "event_id string, _line_no long, _raw string")
    path = str(tmp_path / "routed")
    rest, picked = route(batch, F.col("_line_no") % 7 == 0, path)
    assert sorted(r._line_no for r in picked.collect()) == [0, 7, 14, 21, 28]
    assert {r._raw for r in picked.collect()} == {f"raw {i}" for i in (0, 7, 14, 21, 28)}
    got_rest = rest.collect()
    assert sorted(r._line_no for r in got_rest) == [i for i in range(30) if i % 7]
    assert {r._raw for r in got_rest} == {None}
    assert rest.columns == batch.columns == picked.columns

    rest, picked = route(batch, F.lit(False), path)  # the next batch: nothing picked
    assert picked.count() == 0 and rest.count() == 30


def test_raw_where_needed_keeps_the_text_of_rows_that_can_reach_quarantine(spark):
    """Web (first copy wins, no conflicts): only the bad rows keep ``_raw``. POS (repeats
    with other content are quarantined): every row keeps it."""
    from jobs.ingest.job import raw_where_needed

    rows = [("good", []), ("bad", ["missing_event_id"])]
    checked = spark.createDataFrame(rows, "_raw string, _reasons array<string>")
    web = {r._reasons[0] if r._reasons else "ok": r._raw for r in raw_where_needed(checked, "web").collect()}  # fmt: skip
    assert web == {"ok": None, "missing_event_id": "bad"}
    pos = sorted(r._raw for r in raw_where_needed(checked, "pos").collect())
    assert pos == ["bad", "good"]
