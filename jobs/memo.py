"""Skip a step whose inputs did not change since it last ran for the same date.

A rerun of a night (``cdp run`` again, an Airflow run cleared whole) recomputed every
gold table and export from the very same silver tables: at 1M members, 54 s of gold and
22 s of exports for nothing. For the steps marked ``memo`` in jobs.pipeline (pure
functions of the tables they read, the date and the code), the step's ``meta/runs`` row
keeps its lineage (jobs.lineage: the tables read at their versions, the tables written
at the versions it left them at, the files it wrote with their digests, the code and
settings digest). Before such a step runs, the latest successful row of the same step
and date is looked up (delta-rs, no Spark job); when nothing in its lineage moved, the
step is not run: its row says ``skipped`` and repeats the figures, the lineage and
``computed_by`` (the run that computed them) of that row. Anything else (a new night's silver, a changed output, a deploy,
``--recompute`` or ``CDP_RECOMPUTE=1``) runs the step, and its row says why in
``memo``. A backfill (silver in a scratch lake) always runs, and so do exports to an object
store (their files are noted in the local copy they are written from, gone by the rerun).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs import lineage
from jobs.lake import Lake

if TYPE_CHECKING:
    from jobs.context import RunContext

log = logging.getLogger(__name__)

RECOMPUTE_ENV = "CDP_RECOMPUTE"
RUNS = "meta/runs"


def earlier_run(lake: Lake, step: str, as_of: dt.date) -> tuple[str, dict] | None:
    """(run_id, detail) of the latest successful ``meta/runs`` row of ``step`` for
    ``as_of`` that carries a lineage; None when there is none."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    if not lake.exists(RUNS):
        return None
    rows = (
        lake.delta_table(RUNS)
        .to_pyarrow_dataset()
        .to_table(
            columns=["run_id", "finished_at", "detail"],
            filter=(ds.field("step") == step)
            & (ds.field("as_of_date") == as_of)
            & (ds.field("status") == "ok"),
        )
    )
    if rows.num_rows == 0:
        return None
    order = pc.sort_indices(rows, sort_keys=[("finished_at", "descending")])
    latest = rows.take(order).slice(0, 1).to_pylist()[0]
    try:
        detail = json.loads(latest["detail"])
    except (TypeError, ValueError):
        return None
    return (latest["run_id"], detail) if "lineage" in detail else None


def applies(ctx: RunContext) -> bool:
    """The run's own lake (not a backfill's scratch silver)."""
    return type(ctx.lake) is Lake


def recompute(ctx: RunContext) -> bool:
    """Asked to run every step (``--recompute``, ``CDP_RECOMPUTE=1``)."""
    return ctx.recompute or os.environ.get(RECOMPUTE_ENV) == "1"


def run_memoised(ctx: RunContext, step: str, run: Callable[[], dict]) -> dict:
    """``run()``'s figures with the step's lineage, or the earlier run's figures when
    nothing in that run's lineage changed and no recompute is asked for (``skipped``;
    ``computed_by`` names the run that computed them)."""
    digest = lineage.run_digest(ctx.settings.model_dump_json())
    earlier = None if recompute(ctx) else earlier_run(ctx.lake, step, ctx.as_of)
    why = "recompute asked for" if recompute(ctx) else "first run for this date"
    if earlier is not None:
        run_id, detail = earlier
        why = lineage.unchanged(detail["lineage"], digest)
        if why is None:
            computed_by = detail.get("computed_by", run_id)
            log.info("%s %s: inputs unchanged since run %s, skipped", step, ctx.as_of, computed_by)
            dropped = ("seconds", "memo", "skipped", "pool_retry")  # of the run that computed them
            kept = {k: v for k, v in detail.items() if k not in dropped}
            return {**kept, "computed_by": computed_by, "skipped": "inputs unchanged"}
    with lineage.recording() as seen:
        figures = run()
    summary = seen.summary(digest, lineage.table_version)
    return {**figures, "computed_by": ctx.run_id, "memo": f"ran: {why}", "lineage": summary}
