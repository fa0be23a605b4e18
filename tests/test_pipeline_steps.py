"""run_pipeline's step list: None runs every step, an empty list runs none."""

from __future__ import annotations

import datetime as dt
import sys

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


def test_warm_imports_loads_the_later_steps_libraries_in_a_thread(tmp_path, monkeypatch):
    (tmp_path / "cdp_slow_lib.py").write_text("LOADED = True\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cdp_slow_lib", raising=False)
    steps = [
        pipeline.Step("a", "json:dumps"),
        pipeline.Step("b", "json:dumps", warm=("cdp_no_such_lib", "cdp_slow_lib")),
    ]
    thread = pipeline.warm_imports(steps)
    assert thread is not None
    thread.join(timeout=30)
    assert sys.modules["cdp_slow_lib"].LOADED  # a missing library before it did not stop it
    assert pipeline.warm_imports(steps[:1]) is None
    assert pipeline.warm_imports(steps, skip=["cdp_no_such_lib", "cdp_slow_lib"]) is None


def test_the_quality_step_warms_great_expectations():
    assert "great_expectations" in pipeline.STEP_BY_NAME["quality"].warm


def test_start_up_leaves_scipy_to_the_warm_thread():
    # `cdp run` checks every conf file before the first step; scipy (~1 s to import, for
    # the value models) is imported by the run's background thread, not on that path.
    import subprocess

    code = (
        "import sys; from jobs.config import conf_checks; conf_checks(); "
        "print(sorted(m for m in ('scipy', 'jobs.gold.value_model') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr
    assert "jobs.gold.value_model" in pipeline.STEP_BY_NAME["value"].warm


def test_a_run_without_data_docs_does_not_warm_great_expectations(tmp_path, monkeypatch):
    """``ingest.data_docs: on_failure``: GX only renders Data Docs, so a run does not
    import it ahead of the quality step."""
    skipped = []
    monkeypatch.setattr(pipeline, "warm_imports", lambda steps, skip=(): skipped.append(skip))
    monkeypatch.setattr(pipeline, "run_step", lambda ctx, step, **_: {})
    for docs, expected in (("on_failure", ["great_expectations"]), ("every_run", [])):
        env = {"CDP_LAKE": str(tmp_path / docs), "CDP_DATA_DOCS": docs}
        ctx = RunContext(settings=load_settings(env=env), spark=None, as_of=dt.date(2026, 11, 1))
        pipeline.run_pipeline(ctx, [])
        assert skipped.pop() == expected
