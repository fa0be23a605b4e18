"""End to end: `airflow dags test cdp_nightly` over a generated landing zone (slow).

Runs jobs.demo (the `make demo` entry point) with a throw-away Airflow home: the
project-local Airflow, the generator, the whole DAG through Airflow's own runner,
and then a second time over the same landing zone (idempotent re-run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.slow

EXPECTED_TABLES = (
    "bronze/pos_lines",
    "bronze/web_events",
    "bronze/crm_members",
    "silver/member_xref",
    "silver/members",
    "silver/orders",
    "gold/member_features",
    "gold/member_rfm",
    "gold/member_tags",
    "gold/member_lifecycle",
    "gold/kpi_daily",
    "meta/runs",
)


def _demo(tmp_path):
    env = {**os.environ, "RUST_LOG": "warn"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.demo",
            "--dir",
            str(tmp_path / "demo"),
            "--members",
            "150",
            "--days",
            "5",
            "--end-date",
            "2026-03-09",
            "--runs",
            "1",
            "--airflow-home",
            str(tmp_path / "airflow"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=1500,
    )


def test_airflow_dags_test_builds_the_lake_exports_and_report(tmp_path):
    proc = _demo(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "business date 2026-03-09" in proc.stdout and "-> success" in proc.stdout
    lake = tmp_path / "demo" / "lake"
    for name in EXPECTED_TABLES:
        assert DeltaTable.is_deltatable(str(lake / name)), name
    kpi = DeltaTable(str(lake / "gold" / "kpi_daily")).to_pyarrow_table().to_pylist()
    assert [str(r["as_of_date"]) for r in kpi] == ["2026-03-09"]
    assert kpi[0]["members_total"] > 0
    steps = DeltaTable(str(lake / "meta" / "runs")).to_pyarrow_table().to_pylist()
    run_ids = {r["run_id"] for r in steps}
    assert len(run_ids) == 1  # one pipeline run_id for the whole DAG run
    assert {r["step"] for r in steps if r["status"] == "ok"} >= {"ingest_pos", "exports", "report"}
    day = tmp_path / "demo" / "exports" / "2026-03-09"
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    assert (day / "_SUCCESS").exists() and (day / "report.html").exists()
    assert all((day / f["path"]).exists() for f in manifest["files"])
    for line in ("Quarantine per source:", "manifest:", "Report:"):
        assert line in proc.stdout

    # Second run: landing reused, same date re-run cleanly, still one KPI row for D.
    again = _demo(tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert "present, reused" in again.stdout
    kpi = DeltaTable(str(lake / "gold" / "kpi_daily")).to_pyarrow_table().to_pylist()
    assert [str(r["as_of_date"]) for r in kpi] == ["2026-03-09"]
