"""Set operations on DataFrames that read each input once.

Sail plans every reference to a DataFrame as its own scan (there is no shared subplan),
so ``a.subtract(b).unionByName(b.subtract(a))`` reads and de-duplicates ``a`` and ``b``
twice each; at 100k members that was most of an identity night's seeds.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_SIDE = "__side"


def symmetric_difference(a: DataFrame, b: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``a`` and ``b`` (same columns, by name).

    As ``a.subtract(b) ∪ b.subtract(a)``, nulls equal to nulls, but one read of each:
    both tagged with their side, grouped by every column, kept where one side holds it.
    Output grain: one distinct row of ``a``'s columns."""
    cols = a.columns
    both = a.select(*cols, F.lit(1).alias(_SIDE)).unionByName(
        b.select(*cols, F.lit(2).alias(_SIDE))
    )
    sides = both.groupBy(*cols).agg(F.min(_SIDE).alias("_lo"), F.max(_SIDE).alias("_hi"))
    return sides.filter(F.col("_lo") == F.col("_hi")).select(*cols)
