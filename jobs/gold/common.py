"""Small helpers shared by the gold jobs (I/O edges only)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext


def read_as_of(ctx: RunContext, name: str) -> DataFrame:
    """Rows of a gold table for the run's date D."""
    return ctx.lake.read(name).filter(F.col("as_of_date") == F.lit(ctx.as_of))


def write_as_of(ctx: RunContext, df: DataFrame, name: str) -> None:
    """Replace D's rows of ``name`` with ``df``; other dates are untouched."""
    ctx.lake.replace_where(df, name, f"as_of_date = '{ctx.as_of_str}'")


def previous_as_of(ctx: RunContext, name: str) -> dt.date | None:
    """The latest as_of_date before D present in ``name`` (None when there is none).

    Backfills compare with the date before them too, so a rerun of a past date
    reproduces the changes the nightly run of that date wrote.
    """
    if not ctx.lake.exists(name):
        return None
    # From the Delta log (as_of_date is the partition column), not a scan: a scan of
    # every date's files grows with the table's history, the log lookup stays ~5 ms.
    # A date whose partition holds no rows has no files and is not listed, as a scan
    # would not see it either.
    dates = [
        dt.date.fromisoformat(p["as_of_date"])
        for p in ctx.lake.delta_table(name).partitions()
        if p.get("as_of_date")
    ]
    earlier = [d for d in dates if d < ctx.as_of]
    return max(earlier) if earlier else None
