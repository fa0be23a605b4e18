"""run_pipeline's step list: None runs every step, an empty list runs none."""

from __future__ import annotations

import datetime as dt
import sys

import pytest

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


# The 5M full run's orders step under the 2 GiB pool (2026-12-07), as Sail put it.
POOL_ERROR = (
    "Failed to allocate additional 564.9 KB for FinalHashAggregateStream[0] with 0.0 B "
    "already allocated for this reservation - 80.7 KB remain available for the total "
    "memory pool: fair(pool_size: 2.0 GB)"
)


def test_a_step_out_of_its_engine_pool_names_the_setting_to_raise():
    from jobs.config import EngineConf
    from jobs.pipeline import pool_hint

    engine = EngineConf()
    orders = pool_hint("orders", RuntimeError(POOL_ERROR), engine)
    assert orders is not None and "(2.0 GB)" in orders
    assert "raise engine.memory_limit_mb (a full run) or engine.hash_join_memory_limit_mb" in orders
    identity = pool_hint("identity", RuntimeError(POOL_ERROR), engine)
    assert identity is not None and "raise engine.hash_join_memory_limit_mb in" in identity
    plain = pool_hint("ingest_pos", RuntimeError(POOL_ERROR), engine)
    assert plain is not None and "raise engine.memory_limit_mb in" in plain
    # The bigger pool of the second try failed too: raising the first pools would not do.
    second = pool_hint("orders", RuntimeError(POOL_ERROR.replace("2.0 GB", "8.5 GB")), engine)
    assert second is not None and "set engine.retry_memory_limit_mb" in second
    assert "(8.5 GB)" in second and "raise engine.memory_limit_mb" not in second
    # Any other failure: no hint.
    assert pool_hint("orders", RuntimeError("Resources exhausted: disk full"), engine) is None


def test_run_pipeline_and_the_cli_say_which_pool_to_raise(make_ctx, monkeypatch, capsys):
    from jobs import cli
    from jobs.pipeline import STEP_BY_NAME, StepFailed, run_pipeline

    def out_of_pool(ctx, step, silver_checked=False):
        raise RuntimeError(POOL_ERROR)

    monkeypatch.setattr(pipeline, "run_step", out_of_pool)
    ctx = make_ctx(dt.date(2026, 11, 20))
    with pytest.raises(StepFailed) as failed:
        run_pipeline(ctx, [STEP_BY_NAME["orders"]])
    hint = failed.value.hint
    assert hint is not None and "engine.memory_limit_mb" in hint
    assert str(failed.value).endswith(hint)

    def app(*args, **kwargs):
        raise failed.value

    monkeypatch.setattr(cli, "app", app)
    assert cli._invoke(["run"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cdp: step orders failed: Failed to allocate")
    assert lines[1] == f"cdp: {hint}"


def _out_of_pool_step(ctx):
    raise RuntimeError(POOL_ERROR)


def test_an_airflow_task_out_of_its_pool_records_the_hint_in_meta_runs(make_ctx):
    """An Airflow task calls run_step, not run_pipeline: the hint goes to meta/runs."""
    import json

    from pyspark.sql import functions as F

    from jobs.pipeline import Step, run_step

    ctx = make_ctx(dt.date(2026, 11, 20))
    step = Step("orders", f"{__name__}:_out_of_pool_step")
    with pytest.raises(RuntimeError, match="Failed to allocate"):
        run_step(ctx, step)
    runs = ctx.lake.read("meta/runs").filter(F.col("run_id") == ctx.run_id).collect()
    assert [r.status for r in runs] == ["failed"]
    detail = json.loads(runs[0].detail)
    assert "engine.memory_limit_mb" in detail["hint"] and "(2.0 GB)" in detail["hint"]


def test_the_second_try_takes_half_the_available_memory_or_the_setting():
    from jobs.config import EngineConf
    from jobs.pipeline import pool_mib, retry_pool_mb

    assert pool_mib("2.0 GB") == 2048 and pool_mib("1024.0 KB") == 1 and pool_mib("x") is None
    error = RuntimeError(POOL_ERROR)
    assert retry_pool_mb(EngineConf(), error, available_mb=20_000) == 9984  # 10,000 down to 256s
    assert retry_pool_mb(EngineConf(), error, available_mb=3_000) is None  # 1,280 < the 2 GiB
    assert retry_pool_mb(EngineConf(retry_memory_limit_mb=6144), error, 3_000) == 6144
    assert retry_pool_mb(EngineConf(retry_memory_limit_mb=-1), error, 20_000) is None
    assert retry_pool_mb(EngineConf(), RuntimeError("disk full"), 20_000) is None


def sort_a_window(ctx: RunContext) -> dict:
    """A step whose one query sorts 300k rows: ~10 MB, more than a 1 MiB pool holds
    (Sail: "Failed to allocate additional 10.0 MB for ExternalSorterMerge")."""
    frame = ctx.spark.range(300_000).selectExpr("id % 100000 AS k", "id AS v")
    ranked = frame.selectExpr("k", "row_number() OVER (PARTITION BY k ORDER BY v) AS r")
    return {"rows_out": ranked.where("r = 1").count()}


@pytest.mark.parametrize("retry_mb", [64, -1])
def test_a_step_that_outgrew_its_pool_runs_again_on_a_bigger_one(spark, settings, retry_mb):
    from jobs import engine
    from jobs.config import EngineConf
    from jobs.pipeline import Step, run_step

    tiny_conf = EngineConf(shuffle_partitions=4, memory_limit_mb=1, hash_join_memory_limit_mb=1)
    tiny = engine.get_spark(tiny_conf)  # the fixture's settings: no session stopped
    engine_conf = tiny_conf.model_copy(update={"retry_memory_limit_mb": retry_mb})
    ctx = RunContext(
        settings=settings.model_copy(update={"engine": engine_conf}),
        spark=tiny,
        as_of=dt.date(2026, 11, 20),
    )
    step = Step("sort_a_window", f"{__name__}:sort_a_window", memo=True)
    try:
        if retry_mb == -1:
            with pytest.raises(Exception, match="Failed to allocate"):
                run_step(ctx, step)
            status, detail = "failed", None
        else:
            detail = run_step(ctx, step)
            status = "ok"
    finally:
        engine.release_pools(tiny, keep=spark)
    runs = ctx.on(spark).lake.read("meta/runs").where("step = 'sort_a_window'").collect()
    assert [run.status for run in runs] == [status]
    pools = {slot[1] for slot in engine._servers}
    assert (1, 1) not in pools and (64, 64) not in pools  # both given back
    if detail is None:
        assert "raise engine.memory_limit_mb" in runs[0].detail  # the hint
        return
    assert detail["rows_out"] == 100_000
    assert detail["pool_retry"]["pool_mb"] == 64
    assert "fair(pool_size: 1024.0 KB)" in detail["pool_retry"]["first_error"]
    assert '"pool_retry"' in runs[0].detail
    # Run again with nothing changed: skipped (jobs.memo), and no second try claimed.
    skipped = run_step(ctx.on(spark), step)
    assert skipped["skipped"] == "inputs unchanged" and "pool_retry" not in skipped
