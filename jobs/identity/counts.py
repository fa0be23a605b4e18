"""Row counts of several DataFrames in one query.

On a JVM engine every Spark action costs 0.2-1 s whatever its rows (planning, Delta log
listing, job scheduling), so a step that needs ten counts asks for them together: one
single-row aggregate per DataFrame, unioned, collected once.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def row_counts(frames: dict[str, DataFrame]) -> dict[str, int]:
    """The number of rows of each DataFrame, by the name it is given under (one job).

    Output: name -> row count, for every name of ``frames`` (an empty dict for none).
    """
    if not frames:
        return {}
    parts = [
        df.agg(F.count(F.lit(1)).alias("n")).select(F.lit(name).alias("name"), "n")
        for name, df in frames.items()
    ]
    rows = reduce(DataFrame.unionByName, parts).collect()
    return {r["name"]: int(r["n"]) for r in rows}
