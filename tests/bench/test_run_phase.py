"""bench/run.py keeps the steps measured before a failed step, and says which failed."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
from types import SimpleNamespace

import pytest

from bench import run as bench_run
from jobs.pipeline import StepFailed


def test_a_failed_step_keeps_the_steps_measured_before_it(monkeypatch):
    def pipeline(ctx, on_step):
        on_step(SimpleNamespace(name="ingest_pos"), {"rows_in": 10, "rows_out": 9}, 2.0)
        raise StepFailed("identity", RuntimeError("Resources exhausted"))

    monkeypatch.setattr("jobs.pipeline.run_pipeline", pipeline)
    monkeypatch.setattr("jobs.context.make_context", lambda settings, as_of: None)
    rss = SimpleNamespace(peak=2**30, reset=lambda: None, cpu_seconds=lambda: (3.0, 0.5))
    with pytest.raises(bench_run.PhaseFailed) as failed:
        bench_run.run_phase("nightly", None, dt.date(2026, 11, 20), rss)
    assert failed.value.phase == "nightly"
    assert "identity" in failed.value.error and "Resources exhausted" in failed.value.error
    steps = failed.value.partial["steps"]
    assert [(s["step"], s["seconds"], s["rows_in"], s["peak_rss_mb"]) for s in steps] == [
        ("ingest_pos", 2.0, 10, 1024)
    ]


def test_every_step_is_saved_as_it_finishes(monkeypatch):
    """A run killed mid-phase (time limit, OOM killer) leaves the steps it finished."""
    saved: list[list[str]] = []

    def pipeline(ctx, on_step):
        on_step(SimpleNamespace(name="ingest_pos"), {"rows_in": 10, "rows_out": 9}, 2.0)
        on_step(SimpleNamespace(name="ingest_web"), {"rows_in": 5, "rows_out": 5}, 1.0)

    monkeypatch.setattr("jobs.pipeline.run_pipeline", pipeline)
    monkeypatch.setattr("jobs.context.make_context", lambda settings, as_of: None)
    rss = SimpleNamespace(peak=2**30, reset=lambda: None, cpu_seconds=lambda: (3.0, 0.5))

    def progress(partial: dict) -> None:
        assert partial["running"] is True and partial["as_of"] == "2026-11-20"
        saved.append([step["step"] for step in partial["steps"]])

    phase = bench_run.run_phase("full", None, dt.date(2026, 11, 20), rss, progress=progress)
    assert saved == [["ingest_pos"], ["ingest_pos", "ingest_web"]]
    assert "running" not in phase and [s["step"] for s in phase["steps"]] == saved[-1]
    assert [(s["cpu_seconds"], s["other_cpu_seconds"]) for s in phase["steps"]] == [(3.0, 0.5)] * 2
    assert (phase["cpu_seconds"], phase["other_cpu_seconds"]) == (6.0, 1.0)


def _burn(seconds: float, done) -> None:
    """Spin for ``seconds`` of CPU, send what this process used, live on a little."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    done.send(time.process_time())
    time.sleep(0.5)  # seen by the sampler once more before it exits


def test_the_meter_counts_the_cpu_of_children_started_during_a_step():
    meter = bench_run.PeakRss()
    try:
        meter.reset()
        receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
        child = multiprocessing.get_context("spawn").Process(target=_burn, args=(0.6, send))
        child.start()
        used = receive.recv()
        child.join()
        ours, other = meter.cpu_seconds()
    finally:
        meter.stop()
    # The child's CPU, its start-up included, is ours; this process mostly waited.
    assert ours >= used - 0.1
    assert other >= 0
