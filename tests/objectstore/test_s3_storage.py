"""jobs.storage, the lake state and maintenance on an object store (a local S3 server)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs import storage
from jobs.lake_state import PiiKeyMismatch, check_key, lake_has_tables, recorded_key
from jobs.maintenance import MaintenanceConf, maintain_table
from tests.objectstore.conftest import list_keys


def _write(uri: str, values: list[int], mode: str = "append") -> None:
    write_deltalake(
        uri,
        pa.table({"n": values}),
        mode=mode,
        storage_options=storage.delta_storage_options(uri),
    )


def test_tables_are_found_by_their_delta_log_only(bucket):
    lake = f"s3://{bucket}/lake"
    _write(f"{lake}/silver/members", [1])
    _write(f"{lake}/gold/kpi_daily", [2])
    storage.write_text(f"{lake}/_cdp/pii_key.json", "{}")
    storage.write_text(f"{lake}/silver/not_a_table/part.parquet", "x")
    assert storage.delta_tables(lake) == ["gold/kpi_daily", "silver/members"]
    assert storage.delta_tables(f"s3://{bucket}/nothing-here") == []
    assert lake_has_tables(lake) and not lake_has_tables(f"s3://{bucket}/other")


def test_lake_state_fingerprint_lives_in_the_bucket(bucket):
    lake = f"s3a://{bucket}/lake/"  # s3a:// and a trailing slash name the same lake
    check_key(lake, b"k" * 32, "test")
    assert list_keys(bucket) == ["lake/_cdp/pii_key.json"]
    assert recorded_key(f"s3://{bucket}/lake").source == "test"
    with pytest.raises(PiiKeyMismatch):
        check_key(f"s3://{bucket}/lake", b"x" * 32, "another")


def test_remove_tree_leaves_no_object_behind(bucket):
    base = f"s3://{bucket}/lake/_cdp/staging"
    storage.write_text(f"{base}/run-1/pos/raw/part-0.parquet", "rows")
    storage.write_text(f"{base}/run-1/web/part-0.parquet", "rows")
    storage.remove_tree(f"{base}/run-1/pos")
    assert list_keys(bucket) == ["lake/_cdp/staging/run-1/web/part-0.parquet"]
    storage.remove_tree(f"{base}/run-1")
    storage.remove_tree(f"{base}/never-there")
    assert list_keys(bucket) == []
    assert storage.list_dir(base) == []


def test_local_copy_uploads_changes_and_a_failed_block_nothing(bucket):
    root = f"s3://{bucket}/exports"
    storage.write_text(f"{root}/2026-11-19/a.csv", "old")
    storage.write_text(f"{root}/2026-11-19/gone.csv", "old")
    storage.write_text(f"{root}/2026-11-19/_SUCCESS", "")
    storage.write_text(f"{root}/2026-11-18/kept.csv", "untouched")
    with pytest.raises(RuntimeError):
        with storage.local_copy(root, only=["2026-11-19"]) as local:
            (local / "2026-11-19" / "a.csv").write_text("half")
            raise RuntimeError("crash")
    assert storage.read_text(f"{root}/2026-11-19/a.csv") == "old"
    with storage.local_copy(root, only=["2026-11-19", "2026-11-20"]) as local:
        assert not (local / "2026-11-18").exists()  # only what was asked for
        (local / "2026-11-19" / "a.csv").write_text("new")
        (local / "2026-11-19" / "gone.csv").unlink()
        (local / "2026-11-20").mkdir()
        (local / "2026-11-20" / "b.csv").write_text("b")
        (local / "2026-11-20" / "_SUCCESS").write_text("")
    assert sorted(list_keys(bucket)) == [
        "exports/2026-11-18/kept.csv",
        "exports/2026-11-19/_SUCCESS",
        "exports/2026-11-19/a.csv",
        "exports/2026-11-20/_SUCCESS",
        "exports/2026-11-20/b.csv",
    ]
    assert storage.read_text(f"{root}/2026-11-19/a.csv") == "new"


def test_maintenance_compacts_and_vacuums_a_table_in_the_bucket(bucket):
    uri = f"s3://{bucket}/lake/silver/orders"
    for n in range(3):
        _write(uri, [n])
    before = len(list_keys(bucket, "lake/silver/orders/part-"))
    conf = MaintenanceConf(retention_hours=0, enforce_retention_duration=False)
    line = maintain_table(uri, conf, "silver/orders")
    assert "compacted 3 -> 1 files" in line and "vacuumed 3 files" in line, line
    assert before == 3 and len(list_keys(bucket, "lake/silver/orders/part-")) == 1
    table = DeltaTable(uri, storage_options=storage.delta_storage_options(uri))
    assert sorted(table.to_pyarrow_table().column("n").to_pylist()) == [0, 1, 2]
