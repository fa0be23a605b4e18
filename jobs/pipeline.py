"""The nightly pipeline as an ordered list of steps.

`cdp run` runs them in order; the Airflow DAG `cdp_nightly` calls the very same
step functions one task each (dags/cdp_nightly.py). A step is
``module:function`` taking a :class:`jobs.context.RunContext` and returning a
dict of figures (``rows_in``, ``rows_out`` and anything worth reporting). Steps
are imported lazily so the DAG file and the CLI start fast.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobs.sources import SOURCES

if TYPE_CHECKING:  # the Airflow DAG files import this module: keep pyspark out of it
    from jobs.config import EngineConf
    from jobs.context import RunContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    name: str
    target: str  # "module:function"
    after: tuple[str, ...] = ()
    # Libraries the step needs that take seconds to import (Great Expectations: 3-4 s on an
    # idle machine, scipy and altair included; scipy for the value models): a run imports them in a background thread
    # from its start, while the first steps wait on the engine (warm_imports).
    warm: tuple[str, ...] = ()
    # Skipped when nothing it read, wrote or depends on changed since it last ran for
    # the same date (jobs.memo): a pure function of the tables it reads, the date, the
    # code and the settings.
    memo: bool = False

    def load(self) -> Callable[[RunContext], dict]:
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


# One ingest step per source of the registry (jobs.sources), in its order.
INGEST_STEPS: tuple[Step, ...] = tuple(
    Step(s.ingest_step, f"jobs.ingest.job:{s.ingest_step}") for s in SOURCES.values()
)

# Order matters for `cdp run`; `after` is the dependency graph the DAG uses.
STEPS: tuple[Step, ...] = (
    *INGEST_STEPS,
    Step(
        "quality",
        "jobs.quality.job:run",
        tuple(s.name for s in INGEST_STEPS),
        warm=("great_expectations",),
    ),
    Step("identity", "jobs.identity.job:run", ("quality",)),
    Step("points_ledger", "jobs.silver.points_ledger:run", ("identity",)),
    Step("orders", "jobs.silver.orders:run", ("identity",)),
    Step("features", "jobs.gold.features:run", ("orders",), memo=True),
    Step("value", "jobs.gold.value:run", ("orders",), warm=("jobs.gold.value_model",), memo=True),
    Step("rfm", "jobs.gold.rfm:run", ("features",), memo=True),
    Step("points", "jobs.gold.points:run", ("points_ledger",), memo=True),
    Step("tags", "jobs.gold.tags:run", ("rfm", "value", "points"), memo=True),
    Step("lifecycle", "jobs.gold.lifecycle:run", ("features", "value"), memo=True),
    Step("kpis", "jobs.gold.kpis:run", ("rfm", "tags", "lifecycle", "value"), memo=True),
    Step("channels", "jobs.gold.channels:run", ("orders",), memo=True),
    Step("exports", "jobs.exports.segments:run", ("kpis", "channels"), memo=True),
    Step("report", "jobs.report.html:run", ("exports",), warm=("plotly.graph_objects",)),
)

STEP_BY_NAME = {s.name: s for s in STEPS}


# Sail's words when a query needs more than its server's memory pool (DataFusion's fair pool).
POOL_EXHAUSTED = re.compile(r"Failed to allocate .*memory pool: fair\(pool_size: ([^)]+)\)", re.S)


POOL_UNITS = {"B": 2**-20, "KB": 2**-10, "MB": 1, "GB": 2**10, "TB": 2**20, "PB": 2**30}


def pool_mib(size: str) -> float | None:
    """MiB of a pool size as Sail prints it (DataFusion's ``2.0 GB``, 1024-based), or None."""
    number, _, unit = size.strip().partition(" ")
    try:
        return float(number) * POOL_UNITS[unit.upper()]
    except (ValueError, KeyError):
        return None


def exhausted_pool(cause: BaseException) -> tuple[str, float] | None:
    """The pool size ``cause`` says a query outgrew, as Sail printed it and in MiB; None
    for any other failure (or a size that does not parse)."""
    found = POOL_EXHAUSTED.search(str(cause))
    mib = None if found is None else pool_mib(found.group(1))
    return None if found is None or mib is None else (found.group(1), mib)


def pool_hint(step: str, cause: BaseException, engine: EngineConf) -> str | None:
    """What to change when ``step`` failed because a query outgrew an embedded Sail
    server's memory pool, or None for any other failure. The steps of
    ``engine.hash_join_steps`` run on the hash-join server (its pool:
    ``hash_join_memory_limit_mb``), the others on the one of ``memory_limit_mb``, but for
    the incremental nights of ``engine.hash_join_nights``, which run on the former. A pool
    bigger than both is the second try's (``engine.retry_memory_limit_mb``)."""
    pool = exhausted_pool(cause)
    if pool is None:
        return None
    printed, failed_mb = pool
    configured = (engine.memory_limit_mb, engine.hash_join_memory_limit_mb)
    if 0 not in configured and failed_mb > max(configured):  # the second try's pool
        return (
            f"a query of step {step} needed more than the bigger memory pool of its second "
            f"try ({printed}): set engine.retry_memory_limit_mb in conf/pipeline.yaml "
            f"above that, within the host's memory, or run on a host with more; what each "
            f"size of lake took: docs/scaling.md, \"Memory on one machine\""
        )
    if step in engine.hash_join_steps:
        setting = "engine.hash_join_memory_limit_mb"
    elif step in engine.hash_join_nights:
        setting = ("engine.memory_limit_mb (a full run) or engine.hash_join_memory_limit_mb "
                   "(an incremental night)")  # fmt: skip
    else:
        setting = "engine.memory_limit_mb"
    return (
        f"a query of step {step} needed more than its engine's memory pool "
        f"({printed}): raise {setting} in conf/pipeline.yaml (0: no bound; a bigger "
        f"pool holds more in memory, a smaller one spills more to engine.spill_dir); what "
        f"each size of lake took: docs/scaling.md, \"Memory on one machine\""
    )


def retry_pool_mb(engine: EngineConf, cause: BaseException, available_mb: float) -> int | None:
    """The pool (MiB) a step reruns on after ``cause``, or None for no second try: not a
    pool failure, ``engine.retry_memory_limit_mb`` -1, or a pool no bigger than the one
    that failed. ``available_mb``: the host's available memory, half of which the default
    (0) takes, in steps of 256 MiB."""
    pool = exhausted_pool(cause)
    if pool is None or engine.retry_memory_limit_mb == -1:
        return None
    size = engine.retry_memory_limit_mb or int(available_mb / 2 // 256 * 256)
    return size if size > pool[1] else None


class StepFailed(RuntimeError):
    def __init__(self, step: str, cause: BaseException, hint: str | None = None):
        message = f"step {step} failed: {cause}"
        super().__init__(f"{message}\n{hint}" if hint else message)
        self.step = step
        self.cause = cause
        self.hint = hint


def select_steps(only: Iterable[str] | None = None, until: str | None = None) -> list[Step]:
    names = [s.name for s in STEPS]
    unknown = [n for n in (list(only or []) + ([until] if until else [])) if n not in STEP_BY_NAME]
    if unknown:
        raise ValueError(f"unknown step(s) {unknown}; steps are: {', '.join(names)}")
    steps = list(STEPS)
    if until:
        steps = steps[: names.index(until) + 1]
    if only:
        wanted = set(only)
        steps = [s for s in steps if s.name in wanted]
    return steps


def run_step(ctx: RunContext, step: Step, silver_checked: bool = False) -> dict:
    """Run one step and record it in meta/runs (used by Airflow tasks too).

    ``silver_checked``: ``ctx`` is already the context :func:`context_for` gives (a caller
    running several steps decides once whether the run is a backfill).
    """
    from jobs.lock import lake_lock
    from jobs.silver.backfill import context_for, remove_scratch

    paths = ctx.settings.paths
    with lake_lock(paths.lake, ctx.run_id):
        ctx.pii_key  # noqa: B018 - a key other than the lake's is refused before the step writes
        # A backfill (D before silver's date) computes silver as of D beside the current one.
        step_ctx = ctx if silver_checked else context_for(ctx)
        result = _run_step_locked(step_ctx, step)
        if step_ctx is not ctx and step.name == STEPS[-1].name:
            remove_scratch(ctx)  # the last task of an Airflow run
        return result


def _on_step_session(ctx: RunContext, step: Step) -> RunContext:
    """``ctx`` on the session ``step`` runs on (jobs.engine.step_spark): the same context
    unless the step's joins differ from the run's."""
    from jobs.engine import step_spark

    return ctx.on(step_spark(ctx.spark, step.name, ctx.settings.engine.hash_join_steps))


def _run_step_locked(ctx: RunContext, step: Step) -> dict:
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    status, detail = "ok", {}
    try:
        detail = _run_with_pool_retry(ctx, step)
        return detail
    except Exception as exc:
        status = "failed"
        detail = {"error": f"{type(exc).__name__}: {exc}"}
        hint = pool_hint(step.name, exc, ctx.settings.engine)
        if hint:  # in meta/runs and the task's log too (an Airflow task calls run_step)
            detail["hint"] = hint
            log.error("%s", hint)
        raise
    finally:
        seconds = time.perf_counter() - t0
        detail = {**detail, "seconds": round(seconds, 3)}
        _record(ctx, step.name, status, started, seconds, detail)


def _run_with_pool_retry(ctx: RunContext, step: Step) -> dict:
    """Run ``step``; when one of its queries outgrew its Sail server's pool, run it once
    more on servers with a bigger pool (``engine.retry_memory_limit_mb``; their figures
    then say so under ``pool_retry``), stopped again after that step."""
    import psutil

    from jobs.engine import bigger_pool_spark, release_pools

    t0 = time.perf_counter()
    try:
        return _run_or_skip(ctx, step)
    except Exception as exc:
        available_mb = psutil.virtual_memory().available / 2**20
        pool_mb = retry_pool_mb(ctx.settings.engine, exc, available_mb)
        bigger = None if pool_mb is None else bigger_pool_spark(ctx.spark, pool_mb)
        if bigger is None:
            raise
        first = {"pool_mb": pool_mb, "first_seconds": round(time.perf_counter() - t0, 3)}
        log.warning("step %s outgrew its memory pool: once more on a %d MiB pool (%s)",
                    step.name, pool_mb, str(exc).splitlines()[0][:300])  # fmt: skip
        try:
            detail = _run_or_skip(ctx.on(bigger), step)
        finally:
            release_pools(bigger, keep=ctx.spark)
        return {**detail, "pool_retry": {**first, "first_error": str(exc)[:500]}}


def _run_or_skip(ctx: RunContext, step: Step) -> dict:
    """The step's figures: run, or skipped by jobs.memo when it is marked ``memo``."""
    from jobs import memo

    def run() -> dict:
        return step.load()(_on_step_session(ctx, step)) or {}

    if step.memo and memo.applies(ctx):
        return memo.run_memoised(ctx, step.name, run)
    return run()


def _record(
    ctx: RunContext, step: str, status: str, started: dt.datetime, seconds: float, detail: dict
) -> None:
    from pyspark.sql import Row

    row = Row(
        run_id=ctx.run_id,
        as_of_date=ctx.as_of,
        step=step,
        status=status,
        started_at=started.replace(tzinfo=None),
        finished_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        seconds=float(seconds),
        rows_in=int(detail.get("rows_in", 0) or 0),
        rows_out=int(detail.get("rows_out", 0) or 0),
        detail=json.dumps(detail, default=str, ensure_ascii=False),
    )
    try:
        from jobs.schemas import table_schema

        df = ctx.spark.createDataFrame([row], table_schema("meta/runs").struct)
        ctx.lake.append(df, "meta/runs")
    except Exception as exc:  # noqa: BLE001 - bookkeeping must not hide the step's own outcome
        log.warning("could not record step %s in meta/runs: %s", step, exc)


def warm_imports(steps: Iterable[Step], skip: Collection[str] = ()) -> threading.Thread | None:
    """Import the ``warm`` libraries of ``steps`` but ``skip`` in a daemon thread (None
    when none).

    An import holds the interpreter lock only while it runs Python; the steps before
    mostly wait on the engine, so the import costs them little and the step needing the
    library no longer pays for it. A failed import is left to that step to report.
    """
    modules = [module for step in steps for module in step.warm if module not in skip]
    if not modules:
        return None

    def load() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - the step importing it raises the real error
                log.debug("warm import of %s failed", module, exc_info=True)

    thread = threading.Thread(target=load, name="cdp-warm-imports", daemon=True)
    thread.start()
    return thread


def run_pipeline(
    ctx: RunContext,
    steps: list[Step] | None = None,
    on_step: Callable[[Step, dict, float], None] | None = None,
) -> dict[str, dict]:
    """Run ``steps`` (None: all; an empty list: none) in order under the lake's lock; stop at
    the first failure."""
    from jobs.lock import lake_lock
    from jobs.silver.backfill import context_for, remove_scratch

    results: dict[str, dict] = {}
    paths = ctx.settings.paths
    selected = list(STEPS) if steps is None else steps
    with lake_lock(paths.lake, ctx.run_id):
        # The first step could not wait for them anyway; GX only renders Data Docs.
        skip = ["great_expectations"] if ctx.settings.ingest.data_docs == "on_failure" else []
        warm_imports(selected[1:], skip)
        _remove_dead_runs_leftovers(ctx)
        try:
            # Decided once: no step of a run moves silver's date past the run's own D, and
            # a backfill's steps write silver to its scratch lake, so the answer holds for
            # every step (two state reads per step less).
            step_ctx = context_for(ctx) if selected else ctx
            for step in selected:
                t0 = time.perf_counter()
                try:
                    results[step.name] = run_step(step_ctx, step, silver_checked=True)
                except Exception as exc:
                    hint = pool_hint(step.name, exc, ctx.settings.engine)
                    raise StepFailed(step.name, exc, hint) from exc
                if on_step:
                    on_step(step, results[step.name], time.perf_counter() - t0)
        finally:
            remove_scratch(ctx)  # a backfill's copy of silver (none for a night)
    return results


def _remove_dead_runs_leftovers(ctx: RunContext) -> None:
    """Temporary export folders of runs that were killed (we hold the lock: none is live)."""
    from pathlib import Path

    from jobs.exports.files import remove_dead_run_folders

    for name in remove_dead_run_folders(Path(ctx.settings.paths.exports)):
        log.warning("removed exports/%s, left by a run that died", name)
