"""A step's new files taken in by batches of whole days (ingest.max_batch_bytes) give
exactly the rows, quarantine, duplicates and manifest of one batch; the quality step
checks every batch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.config import load_settings, with_paths
from jobs.context import RunContext
from jobs.ingest import job as ingest_job
from jobs.ingest.job import checked_paths, day_batches, ingest
from jobs.ingest.landing import LandingFile
from jobs.sources import SOURCES

END = dt.date(2026, 11, 20)
RUN_COLUMNS = {"_ingested_at", "_run_id", "ingested_at", "run_id"}


def _file(day: int, name: str, size: int) -> LandingFile:
    date = dt.date(2026, 11, day)
    return LandingFile("pos", date, Path(name), f"pos/{date}/{name}", size, 0)


def test_batches_are_whole_days_in_date_order():
    files = [_file(3, "a.csv", 40), _file(1, "b.csv", 30), _file(1, "a.csv", 30),
             _file(2, "a.csv", 70), _file(4, "a.csv", 10)]  # fmt: skip
    names = [[f.rel_path for f in b] for b in day_batches(files, 100)]
    assert names == [
        ["pos/2026-11-01/a.csv", "pos/2026-11-01/b.csv"],  # 60 bytes: day 2 would pass 100
        ["pos/2026-11-02/a.csv"],
        ["pos/2026-11-03/a.csv", "pos/2026-11-04/a.csv"],
    ]
    assert len(day_batches(files, 0)) == 1 and day_batches([], 100) == []
    assert [len(b) for b in day_batches(files, 1)] == [2, 1, 1, 1]  # a bigger day: alone


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    from jobs.generate.landing import generate_landing

    out = tmp_path_factory.mktemp("batches") / "landing"
    generate_landing(out, members=200, days=5, seed=23, end_date=END, workers=1)
    return out


def _ingest_all(spark, landing: Path, base: Path, max_bytes: int) -> tuple[RunContext, dict]:
    s = with_paths(load_settings(env={}), landing=landing, lake=base / "lake",
                   exports=base / "exports", work=base / "work")  # fmt: skip
    s = s.model_copy(update={"ingest": s.ingest.model_copy(update={"max_batch_bytes": max_bytes})})
    ctx = RunContext(settings=s, spark=spark, as_of=END)
    return ctx, {src: ingest(ctx, src) for src in SOURCES}


def _rows(ctx: RunContext, name: str) -> list[tuple]:
    if not ctx.lake.exists(name):
        return []
    df = ctx.lake.read(name)
    keep = sorted(c for c in df.columns if c not in RUN_COLUMNS)
    rows = df.select(*keep).collect()
    return sorted(tuple(repr(v) for v in r) for r in rows)


def _tables() -> list[str]:
    return sorted(
        {t for src in SOURCES.values()
         for t in (src.bronze_table, src.quarantine_table, src.dedup.duplicates_table) if t}
        | {"meta/ingest_manifest"}
    )  # fmt: skip


def test_many_earlier_copies_are_read_as_a_query(spark, landing, tmp_path, monkeypatch):
    """Above MAX_LOCAL_EXISTING the bronze rows sharing a key with a batch are not read
    into a local frame but joined as a query: the same rows either way."""
    one, _ = _ingest_all(spark, landing, tmp_path / "one", 0)
    monkeypatch.setattr(ingest_job, "MAX_LOCAL_EXISTING", 0)
    lazy, _ = _ingest_all(spark, landing, tmp_path / "lazy", 1)
    for name in _tables():
        assert _rows(one, name) == _rows(lazy, name), name


def test_batches_give_the_rows_of_one_batch(spark, landing, tmp_path):
    from jobs.quality.job import run as quality

    one, figures_one = _ingest_all(spark, landing, tmp_path / "one", 0)
    many, figures_many = _ingest_all(spark, landing, tmp_path / "many", 1)  # a day a batch
    assert {s: f["batches"] for s, f in figures_one.items()} == {s: 1 for s in SOURCES}
    assert all(f["batches"] == 5 for f in figures_many.values())
    for name in _tables():
        assert _rows(one, name) == _rows(many, name), name
    # The planted repeats cross days (re-sent files, redelivered events), so later batches
    # found their first copies in the bronze rows the earlier ones wrote.
    assert many.lake.read(SOURCES["web"].dedup.duplicates_table).count() > 0
    for key in ("rows_in", "rows_out", "quarantined", "duplicates"):
        assert {s: f[key] for s, f in figures_one.items()} == {
            s: f[key] for s, f in figures_many.items()
        }, key
    # The quality step validates every batch's checked rows.
    assert len(checked_paths(many, "web")) == 5
    quality(many)
    checked = many.lake.read("meta/quality_results").filter(F.col("source") == "web")
    assert checked.count() > 0
    counts = {r["element_count"] for r in checked.select("element_count").collect()}
    assert counts == {figures_many["web"]["rows_in"]}  # every expectation saw every row
