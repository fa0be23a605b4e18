"""Several small results in one Spark query (the report's charts, the quality step's figures).

On a JVM engine each query costs 0.5-3 CPU seconds whatever its rows, and the report
reads a dozen small aggregates (a few hundred rows at most each). Each one is folded into
a single row, ``collect_list(struct(*))``, and those one-row results are joined, so the
page costs one query; the values come back with their Spark types (dates, doubles).
For results of a few thousand rows at most: they all travel in one row.
Row order within a result is not kept: callers sort what they draw.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def collect_all(parts: dict[str, DataFrame]) -> dict[str, list[dict]]:
    """``parts``: name -> a small DataFrame. Returns name -> its rows as dicts (any order),
    all computed in one query."""
    if not parts:
        return {}
    # The struct is made in a select of its own: aggregated directly, Sail 0.7 can get a
    # field's nullability wrong ("Physical input schema should be the same ...").
    lists = [
        df.select(F.struct("*").alias("row")).agg(F.collect_list("row").alias(name))
        for name, df in parts.items()
    ]
    row = reduce(DataFrame.crossJoin, lists).first()
    return {name: [r.asDict() for r in row[name]] for name in parts}
