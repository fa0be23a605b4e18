"""Set operations on DataFrames: each input read twice at most, narrow rows grouped.

Sail plans every reference to a DataFrame as its own scan (there is no shared subplan),
so ``a.subtract(b).unionByName(b.subtract(a))`` reads and de-duplicates ``a`` and ``b``
twice each; at 100k members that was most of an identity night's seeds.

Rows are compared by a 128-bit digest (two xxhash64 of every column and its null flag)
rather than grouped whole: a night's difference of two tables of millions of rows then
groups two longs a row, not every column, and only the few differing rows are picked out
of the inputs again. Two rows of different content share both digests with a chance of
about n^2 / 2^129 (under 1e-22 for 100M rows).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_SIDE = "__side"
_DIGEST = ["__h1", "__h2"]
# The column :func:`sided_difference` adds.
NEW = "_new"


def _digests(cols: list[str]) -> list[Column]:
    """Two 64-bit digests of a row's ``cols``. Each column is hashed with its null flag:
    xxhash64 skips a null, so ("a", null) and (null, "a") would otherwise hash alike."""
    parts = [part for c in cols for part in (F.col(c), F.col(c).isNull())]
    return [
        F.xxhash64(*parts).alias(_DIGEST[0]),
        F.xxhash64(F.lit("second digest"), *parts).alias(_DIGEST[1]),
    ]


def _sides(a: DataFrame, b: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``a`` and ``b`` with ``_lo`` = 1 (``a``'s)
    or 2 (``b``'s), nulls equal to nulls.

    Both are tagged with their side and digested; the digests are grouped (two longs a
    row) and those held by one side only are joined back to their rows, one copy each.
    Each input is read twice: for the digests, then for its differing rows."""
    cols = a.columns
    both = a.select(*cols, *_digests(cols), F.lit(1).alias(_SIDE)).unionByName(
        b.select(*cols, *_digests(cols), F.lit(2).alias(_SIDE))
    )
    one_side = (
        both.groupBy(*_DIGEST)
        .agg(F.min(_SIDE).alias("_lo"), F.max(_SIDE).alias("_hi"))
        .filter(F.col("_lo") == F.col("_hi"))
        .select(*_DIGEST, "_lo")
    )
    # A digest held by one side only comes from that side's rows: no side filter needed.
    rows = both.drop(_SIDE).join(one_side, _DIGEST).dropDuplicates(_DIGEST)
    return rows.select(*cols, "_lo")


def symmetric_difference(a: DataFrame, b: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``a`` and ``b`` (same columns, by name).

    As ``a.subtract(b) ∪ b.subtract(a)``, nulls equal to nulls, in two reads of each.
    Output grain: one distinct row of ``a``'s columns."""
    return _sides(a, b).drop("_lo")


def sided_difference(new: DataFrame, current: DataFrame) -> DataFrame:
    """The distinct rows in exactly one of ``new`` and ``current`` (same columns, by
    name), each with ``_new`` (True: ``new``'s). Two reads of each.
    Output grain: one distinct row of either side not in the other."""
    return _sides(new, current).select(*new.columns, (F.col("_lo") == 1).alias(NEW)).drop("_lo")


def added_or_removed(diff: DataFrame, keys: list[str]) -> DataFrame:
    """Rows of a :func:`sided_difference` whose key is on one side only (added or
    removed, not changed). Reads ``diff`` four times: materialise it first."""
    new, old = diff.filter(F.col(NEW)), diff.filter(~F.col(NEW))
    return new.join(old.select(*keys), keys, "left_anti").unionByName(
        old.join(new.select(*keys), keys, "left_anti")
    )
