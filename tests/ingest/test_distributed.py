"""Parsing on the executors (a cluster engine) gives the same bronze, quarantine and
manifest as parsing in the driver (jobs.ingest.distributed), bad rows included."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from jobs.config import Settings
from jobs.context import RunContext
from jobs.ingest.distributed import parse_place
from jobs.ingest.job import checked_paths, ingest
from jobs.lake_state import staging_dir
from tests.ingest.landing_fixtures import event, sale, write_crm, write_pos, write_web

END = dt.date(2026, 11, 20)
TABLES = [
    "bronze/pos_lines",
    "bronze/web_events",
    "bronze/web_event_duplicates",
    "bronze/crm_members",
    "quarantine/pos",
    "quarantine/web",
    "quarantine/crm",
    "meta/ingest_manifest",
]
RUN_COLUMNS = {"_ingested_at", "_run_id", "ingested_at", "run_id"}  # differ run to run


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    """A small generated zone (with its planted bad rows) plus hand-written hostile files."""
    from jobs.generate.landing import generate_landing

    out = tmp_path_factory.mktemp("dist") / "landing"
    generate_landing(out, members=80, days=3, seed=5, end_date=END, workers=1)
    day = END.isoformat()
    write_pos(
        out,
        day,
        "S99",
        [sale("X1", 1, f"{day} 10:00:00"), "X2,1,S99,not a row"],
        encoding="gb18030",
    )
    write_web(out, day, "zz", [event("E1", f"{day}T10:00:00+08:00"), "{broken json"], gz=True)
    (out / "web" / day / "events_bad_name.txt").write_text("not an export\n")
    write_crm(out, day, [",,,,,,,,,,,,,,,,,,"])
    return out


def _settings(settings: Settings, landing: Path, base: Path, parse_on: str) -> Settings:
    paths = settings.paths.model_copy(
        update={"landing": landing, "lake": base / "lake", "work": base / "work"}
    )
    ingest_conf = settings.ingest.model_copy(update={"parse_on": parse_on})
    return settings.model_copy(update={"paths": paths, "ingest": ingest_conf})


def _rows(lake: Path, table: str) -> list[tuple]:
    data: pa.Table = DeltaTable(str(lake / table)).to_pyarrow_table()
    keep = [c for c in data.column_names if c not in RUN_COLUMNS]
    return sorted((tuple(r.values()) for r in data.select(keep).to_pylist()), key=repr)


def test_parse_place_follows_the_engine(settings):
    def place(**engine) -> str:
        return parse_place(
            settings.model_copy(update={"engine": settings.engine.model_copy(update=engine)})
        )

    assert place(kind="sail") == "driver"
    assert place(kind="spark", spark_master="local[2]") == "driver"
    assert place(kind="spark", spark_master="spark://10.0.0.1:7077") == "executors"
    assert place(kind="connect") == "executors"


def _figures(result: dict) -> dict:
    """A step's figures less its timings."""
    return {k: v for k, v in result.items() if k != "phase_seconds"}


def test_executors_and_driver_give_the_same_tables(spark, settings, landing, tmp_path):
    results = {}
    for parse_on in ("driver", "executors"):
        s = _settings(settings, landing, tmp_path / parse_on, parse_on)
        ctx = RunContext(settings=s, spark=spark, as_of=END)
        results[parse_on] = {src: _figures(ingest(ctx, src)) for src in ("pos", "web", "crm")}
        # The staged rows were parsed, checked and kept for the quality step (the parsed
        # Parquet itself is removed once its batch is checked).
        assert [Path(p).name for p in checked_paths(ctx, "pos")] == ["checked-0000"]
        assert not (Path(staging_dir(s.paths.lake, ctx.run_id)) / "pos" / "raw").exists()
    assert results["driver"] == results["executors"]
    assert all(results["driver"][src]["quarantined"] > 0 for src in ("pos", "web", "crm"))
    for table in TABLES:
        driver = _rows(tmp_path / "driver" / "lake", table)
        executors = _rows(tmp_path / "executors" / "lake", table)
        assert driver, table
        assert driver == executors, table
