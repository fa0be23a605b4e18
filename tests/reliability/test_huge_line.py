"""A 1 GB single line in a POS file: quarantined as line_too_long, memory stays bounded."""

from __future__ import annotations

import sys

import pytest
from pyspark.sql import functions as F

from tests.ingest.landing_fixtures import POS_HEADER, sale
from tests.reliability.cli import INGEST_STEPS, cdp_env, run_cdp_peak

pytestmark = pytest.mark.slow

D = "2026-11-05"
GB = 1 << 30


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's")
def test_one_gigabyte_line(spark, tmp_path):
    days = {s: tmp_path / "landing" / s / D for s in ("pos", "web", "crm")}
    for d in days.values():
        d.mkdir(parents=True)
        (d / "_SUCCESS").write_text("")
    path = days["pos"] / "pos_S01_20261105.csv"
    with path.open("w", encoding="utf-8") as f:  # written in 1 MB pieces
        f.write(POS_HEADER + "\n")
        for i in range(5):
            f.write(sale(f"A{i}", 1, f"{D} 10:00:00") + "\n")
        f.write(f"BIG,1,S01,{D} 10:00:00,SALE,,,,")
        piece = "x" * (1 << 20)
        for _ in range(GB >> 20):
            f.write(piece)
        f.write(",生鲜,1,10.00,0,10.00,cash,,\n")
        for i in range(5):
            f.write(sale(f"B{i}", 1, f"{D} 11:00:00") + "\n")
    assert path.stat().st_size > GB

    proc, peak = run_cdp_peak(["run", "--date", D, "--steps", INGEST_STEPS], cdp_env(tmp_path))
    peak_gib = peak / (1 << 30)
    print(f"peak {peak_gib:.3f} GiB")
    path.unlink()  # give the disk back before the checks
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert peak_gib < 1.0, f"cdp run peaked at {peak_gib:.2f} GiB for a 1 GiB line"

    lake = tmp_path / "lake"
    bronze = spark.read.format("delta").load(str(lake / "bronze" / "pos_lines"))
    assert sorted(r.order_id for r in bronze.collect()) == [
        f"{p}{i}" for p in "AB" for i in range(5)
    ]
    (bad,) = spark.read.format("delta").load(str(lake / "quarantine" / "pos")).collect()
    assert bad._reasons == ["line_too_long"] and bad._line_no == 7
    assert bad._raw.startswith("BIG,1,S01,") and len(bad._raw) < 1_100_000
    m = spark.read.format("delta").load(str(lake / "meta" / "ingest_manifest"))
    (row,) = m.where(F.col("source") == "pos").collect()
    assert row.size_bytes > GB and (row.rows_total, row.rows_good, row.rows_bad) == (11, 10, 1)
