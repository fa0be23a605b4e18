"""run_pipeline's step list: None runs every step, an empty list runs none."""

from __future__ import annotations

import datetime as dt

import jobs.pipeline as pipeline
from jobs.config import load_settings
from jobs.context import RunContext


def test_an_empty_step_list_runs_nothing(tmp_path, monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(pipeline, "run_step", lambda ctx, step, **_: ran.append(step.name) or {})
    env = {"CDP_LAKE": str(tmp_path / "lake"), "CDP_EXPORTS": str(tmp_path / "exports")}
    ctx = RunContext(settings=load_settings(env=env), spark=None, as_of=dt.date(2026, 11, 1))
    assert pipeline.run_pipeline(ctx, []) == {}
    assert ran == []
    pipeline.run_pipeline(ctx, None)
    assert ran == [step.name for step in pipeline.STEPS]
