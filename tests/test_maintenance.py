"""Compaction and vacuum through delta-rs on real Delta tables."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs.maintenance import MaintenanceConf, TableMaintenance, load_maintenance_conf, maintain_all


def _parquet_files(path) -> set[str]:
    return {p.name for p in path.rglob("*.parquet")}


def _small_table(path, appends: int) -> None:
    for i in range(appends):
        write_deltalake(
            str(path), pa.table({"k": [i, i + 100], "v": [f"a{i}", f"b{i}"]}), mode="append"
        )


def test_compacts_and_vacuums_every_table(settings):
    lake = settings.paths.lake
    _small_table(lake / "gold" / "member_rfm", 4)
    _small_table(lake / "silver" / "orders", 3)
    before = DeltaTable(str(lake / "gold" / "member_rfm")).to_pyarrow_table().sort_by("k")

    conf = MaintenanceConf(retention_hours=0, enforce_retention_duration=False)
    lines = list(maintain_all(settings, conf))

    assert lines == [
        "gold/member_rfm: v3, compacted 4 -> 1 files, vacuumed 4 files (retention 0h)",
        "silver/orders: v2, compacted 3 -> 1 files, vacuumed 3 files (retention 0h)",
    ]
    table = DeltaTable(str(lake / "gold" / "member_rfm"))
    assert table.to_pyarrow_table().sort_by("k") == before  # same rows after the rewrite
    assert len(table.file_uris()) == 1
    assert _parquet_files(lake / "gold" / "member_rfm") == {
        p.rsplit("/", 1)[-1] for p in table.file_uris()
    }


def test_retention_window_keeps_recent_files_and_per_table_override(settings):
    lake = settings.paths.lake
    _small_table(lake / "gold" / "member_tags", 2)
    _small_table(lake / "gold" / "member_rfm", 2)
    conf = MaintenanceConf(
        retention_hours=168,
        tables={"gold/member_rfm": TableMaintenance(retention_hours=0)},
        enforce_retention_duration=False,
    )
    lines = list(maintain_all(settings, conf))
    # member_tags: files removed by compaction just now are inside the 7-day window and stay.
    assert (
        "gold/member_tags: v1, compacted 2 -> 1 files, vacuumed 0 files (retention 168h)" in lines
    )
    assert "gold/member_rfm: v1, compacted 2 -> 1 files, vacuumed 2 files (retention 0h)" in lines
    assert len(_parquet_files(lake / "gold" / "member_tags")) == 3
    # Time travel to before the compaction still works where files were kept.
    old = DeltaTable(str(lake / "gold" / "member_tags"), version=1).to_pyarrow_table()
    assert old.num_rows == 4


def test_enforced_retention_refuses_short_window_and_reports(settings):
    _small_table(settings.paths.lake / "gold" / "kpi_daily", 2)
    conf = MaintenanceConf(retention_hours=0, enforce_retention_duration=True)
    gen = maintain_all(settings, conf)
    line = next(gen)
    assert line.startswith("gold/kpi_daily: FAILED")
    with pytest.raises(RuntimeError, match="gold/kpi_daily"):
        next(gen)


def test_empty_lake_and_shipped_conf(settings):
    assert list(maintain_all(settings, MaintenanceConf())) == [
        f"no Delta tables under {settings.paths.lake}"
    ]
    conf = load_maintenance_conf()
    assert conf.retention_hours >= 168
    assert conf.tables["gold/member_rfm"].retention_hours == 720


def test_tables_written_by_sail(spark, settings):
    # The lake is written by Sail: delta-rs must be able to compact and vacuum those tables too.
    path = str(settings.paths.lake / "silver" / "members")
    for i in range(3):
        spark.createDataFrame([(f"m{i}", i)], "member_id string, n int").write.format("delta").mode(
            "append"
        ).save(path)
    lines = list(
        maintain_all(settings, MaintenanceConf(retention_hours=0, enforce_retention_duration=False))
    )
    assert lines[0].startswith("silver/members: v2, compacted 3 -> 1 files, vacuumed 3 files")
    got = spark.read.format("delta").load(path).orderBy("n").collect()
    assert [r.member_id for r in got] == ["m0", "m1", "m2"]
