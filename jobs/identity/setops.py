"""Set operations on DataFrames that read each input once.

Sail plans every reference to a DataFrame as its own scan (there is no shared subplan),
so ``a.subtract(b).unionByName(b.subtract(a))`` reads and de-duplicates ``a`` and ``b``
twice each; at 100k members that was most of an identity night's seeds.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_SIDE = "__side"
# The column :func:`sided_difference` adds.
NEW = "_new"


def _sides(a: DataFrame, b: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``a`` and ``b`` with ``_lo`` = 1 (``a``'s)
    or 2 (``b``'s): both tagged with their side, grouped by every column (nulls equal),
    kept where one side holds it. One read of each."""
    cols = a.columns
    both = a.select(*cols, F.lit(1).alias(_SIDE)).unionByName(
        b.select(*cols, F.lit(2).alias(_SIDE))
    )
    sides = both.groupBy(*cols).agg(F.min(_SIDE).alias("_lo"), F.max(_SIDE).alias("_hi"))
    return sides.filter(F.col("_lo") == F.col("_hi")).select(*cols, "_lo")


def symmetric_difference(a: DataFrame, b: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``a`` and ``b`` (same columns, by name).

    As ``a.subtract(b) ∪ b.subtract(a)``, nulls equal to nulls, but one read of each.
    Output grain: one distinct row of ``a``'s columns."""
    return _sides(a, b).drop("_lo")


def sided_difference(new: DataFrame, current: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``new`` and ``current`` (same columns, by
    name), each with ``_new`` (True: ``new``'s). One read of each.
    Output grain: one distinct row of either side not in the other."""
    return _sides(new, current).select(*new.columns, (F.col("_lo") == 1).alias(NEW)).drop("_lo")


def added_or_removed(diff: DataFrame, keys: list[str]) -> DataFrame:
    """Rows of a :func:`sided_difference` whose key is on one side only (added or
    removed, not changed). Reads ``diff`` four times: materialise it first."""
    new, old = diff.filter(F.col(NEW)), diff.filter(~F.col(NEW))
    return new.join(old.select(*keys), keys, "left_anti").unionByName(
        old.join(new.select(*keys), keys, "left_anti")
    )
