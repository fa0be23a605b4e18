"""bench/night_replay.py: a lake copy with every non-bronze table back at its version as of
a moment, bronze as it is, the source untouched."""

from __future__ import annotations

import datetime as dt
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from bench.night_replay import replay_copy


def _write(path, values: list[int]) -> None:
    write_deltalake(str(path), pa.table({"v": values}), mode="append")
    time.sleep(0.05)  # commits a few milliseconds apart


def test_copy_cuts_non_bronze_tables_at_the_moment_and_keeps_bronze(tmp_path):
    lake = tmp_path / "lake"
    _write(lake / "bronze" / "pos_lines", [1])
    _write(lake / "silver" / "orders", [1])
    at = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    _write(lake / "bronze" / "pos_lines", [2])  # the night's ingest: kept
    _write(lake / "silver" / "orders", [2])  # the night's result: cut
    _write(lake / "silver" / "orders", [3])
    _write(lake / "gold" / "kpi_daily", [9])  # created by the night: left out

    versions = replay_copy(lake, tmp_path / "copy", at)

    copy = tmp_path / "copy"
    assert versions == {"gold/kpi_daily": None, "silver/orders": 0}
    assert DeltaTable(str(copy / "silver" / "orders")).version() == 0
    assert DeltaTable(str(copy / "silver" / "orders")).to_pyarrow_table()["v"].to_pylist() == [1]
    assert sorted(
        DeltaTable(str(copy / "bronze" / "pos_lines")).to_pyarrow_table()["v"].to_pylist()
    ) == [1, 2]
    assert not (copy / "gold" / "kpi_daily").exists()
    # the source lake is as it was
    assert DeltaTable(str(lake / "silver" / "orders")).version() == 2
    assert (lake / "gold" / "kpi_daily").exists()
    # the copy's log is its own: a commit to it leaves the source's log alone
    write_deltalake(str(copy / "silver" / "orders"), pa.table({"v": [7]}), mode="append")
    assert DeltaTable(str(lake / "silver" / "orders")).version() == 2
    assert sorted(
        DeltaTable(str(lake / "silver" / "orders")).to_pyarrow_table()["v"].to_pylist()
    ) == [1, 2, 3]


def test_ingest_copy_cuts_bronze_too(tmp_path):
    """With INGEST_KEPT (``--ingest``) bronze goes back to the moment as well: the night's
    files are new again to the ingest steps."""
    from bench.night_replay import INGEST_KEPT

    lake = tmp_path / "lake"
    _write(lake / "bronze" / "pos_lines", [1])
    _write(lake / "meta" / "ingest_manifest", [1])
    at = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    _write(lake / "bronze" / "pos_lines", [2])
    _write(lake / "meta" / "ingest_manifest", [2])

    versions = replay_copy(lake, tmp_path / "copy", at, INGEST_KEPT)

    assert versions == {"bronze/pos_lines": 0, "meta/ingest_manifest": 0}
    copy = tmp_path / "copy"
    assert DeltaTable(str(copy / "bronze" / "pos_lines")).to_pyarrow_table()["v"].to_pylist() == [1]
    assert DeltaTable(str(lake / "bronze" / "pos_lines")).version() == 1
