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
    row = (
        ctx.lake.read(name)
        .filter(F.col("as_of_date") < F.lit(ctx.as_of))
        .agg(F.max("as_of_date").alias("d"))
        .first()
    )
    return row["d"] if row else None
