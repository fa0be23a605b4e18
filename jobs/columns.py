"""Column expressions shared by several jobs (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column
from pyspark.sql import functions as F


def sorted_distinct(column: str) -> Column:
    """Aggregate: the distinct non-null values of ``column`` in a group, sorted; an
    empty array when there are none. The same array as ``array_sort(collect_set(c))``.

    Built from ``collect_list``: on Sail 0.7.2 ``collect_set`` is about 10x slower and
    slows every other aggregate of its groupBy (1M POS lines into 476k orders: the
    categories alone 1.50 s against 0.15 s, the whole order aggregate 2.1-3.4 s
    against 0.56 s without them).
    """
    return F.array_sort(F.array_distinct(F.collect_list(column)))


def any_true(condition: Column) -> Column:
    """Aggregate: whether ``condition`` holds on some row of the group (null when it is
    null on every row), as ``max`` over a boolean.

    ``bool_or``, not ``max``: on Sail 0.7.2 ``max`` over a boolean is about 10x slower
    than over any other type (15M rows into 1M groups: 4.3 s against 0.45 s for
    ``bool_or``, ``max`` of an int or of a string).
    """
    return F.bool_or(condition)


def let(value: Column, body: Callable[[Column], Column]) -> Column:
    """``body(value)`` with ``value`` computed once, however often ``body`` reads it.

    Sail 0.7.2 merges projections and shares no subexpression: an expression read three
    times is computed three times. Passed to a lambda (``transform`` over a one-element
    array), it is computed once and each read is a variable's (1M members: the median
    gap between purchases, its sorted gaps read three times: 3.4 -> 2.6 s; see
    docs/scaling.md). On Spark the result is the same.
    """
    return F.element_at(F.transform(F.array(value), body), 1)
