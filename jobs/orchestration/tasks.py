"""Task callables of the DAGs: each runs pipeline code with a context built from Airflow's.

Imports of Spark and of the jobs are inside the functions: the DAG files import this
module when they are parsed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def _json_safe(figures: dict) -> dict:
    # Task results go to XCom, which only takes JSON; step figures may hold dates/decimals.
    return json.loads(json.dumps(figures, default=str))


def run_pipeline_step(step: str, **context: Any) -> dict:
    """Run one step of ``jobs.pipeline`` for the DAG run's business date.

    Idempotent: every step replaces what it wrote for the date, so a retry or a
    cleared task re-runs cleanly. One pipeline ``run_id`` per DAG run (all tasks and
    retries of a run record under it in meta/runs). A gold or export step whose inputs
    did not change since it last ran for the date is skipped (jobs.memo) unless the DAG
    run's conf says ``"recompute": true``.
    """
    from jobs.config import load_settings
    from jobs.context import make_context
    from jobs.orchestration.dates import context_business_date, run_id_for
    from jobs.pipeline import STEP_BY_NAME, run_step

    as_of = context_business_date(context)
    dag_run = context.get("dag_run")
    airflow_run_id = getattr(dag_run, "run_id", None) or str(context.get("run_id"))
    dag_id = getattr(dag_run, "dag_id", None) or "cdp_nightly"
    settings = load_settings()
    recompute = bool((getattr(dag_run, "conf", None) or {}).get("recompute"))
    ctx = make_context(
        settings, as_of, run_id=run_id_for(dag_id, airflow_run_id), recompute=recompute
    )
    log.info(
        "step %s for business date %s (pipeline run_id %s, airflow run %s, lake %s)",
        step,
        as_of,
        ctx.run_id,
        airflow_run_id,
        settings.paths.lake,
    )
    figures = run_step(ctx, STEP_BY_NAME[step])
    log.info("step %s done: %s", step, figures)
    return _json_safe(figures)


def run_maintenance(**context: Any) -> list[str]:
    """Compact and vacuum every Delta table of the lake (``cdp maintain``)."""
    from jobs.config import load_settings
    from jobs.maintenance import maintain_all

    lines = []
    for line in maintain_all(load_settings()):
        log.info("%s", line)
        lines.append(line)
    return lines
