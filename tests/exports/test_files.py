"""Sorted export files: the same bytes for the same rows, whichever engine wrote the parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.exports.files import sort_parquet, write_sorted_file


def test_sorted_parquet_bytes_do_not_depend_on_engine_schema_details(tmp_path: Path):
    rows = {"member_id": ["M2", "M1"], "segment": ["vip", "vip"]}
    # As Sail writes them: NOT NULL kept, plan-dependent field metadata.
    sail = pa.schema(
        [
            pa.field("member_id", pa.string(), metadata={"SPARK::metadata::json": "{}"}),
            pa.field("segment", pa.string(), nullable=False),
        ]
    )
    # As Spark writes them: every column nullable, metadata on the file only.
    spark = pa.schema([pa.field("member_id", pa.string()), pa.field("segment", pa.string())])
    spark = spark.with_metadata({"org.apache.spark.sql.parquet.row.metadata": "{}"})
    paths = []
    for name, schema in (("sail", sail), ("spark", spark)):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table(rows, schema=schema), path)
        sort_parquet(path)
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    table = pq.read_table(paths[0])
    assert table.column("member_id").to_pylist() == ["M1", "M2"]
    assert all(f.nullable and not f.metadata for f in table.schema)


def test_csv_files_hold_dates_as_iso_text(spark, tmp_path: Path):
    """Dates go to CSV as text written before the engine's CSV writer sees them (Sail's
    cluster mode writes date values as empty fields): ``yyyy-MM-dd``, null as empty."""
    import datetime as dt

    rows = spark.createDataFrame([("a", dt.date(2026, 11, 7)), ("b", None)], "m string, d date")
    target = tmp_path / "out.csv"
    write_sorted_file(rows, "csv", target, tmp_path)
    assert target.read_text() == "m,d\na,2026-11-07\nb,\n"


def test_csv_files_without_a_date_column(spark, tmp_path: Path):
    """No date column, nothing to turn into text (a Connect client refuses an empty
    ``withColumns``: `cdp sql` and `cdp eval-identity` files failed)."""
    rows = spark.createDataFrame([("a", 2), ("b", 1)], "m string, n int")
    target = tmp_path / "out.csv"
    write_sorted_file(rows, "csv", target, tmp_path)
    assert target.read_text() == "m,n\na,2\nb,1\n"
