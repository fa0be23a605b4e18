"""What an identity run changes in the silver tables it keeps (pure transforms).

A night rewrites only the rows that changed: this run's rows of a table (all of them,
or those of the members it recomputed) are compared with the table's current rows,
and only new, changed or vanished rows go into one MERGE (jobs.lake.Lake.apply_changes).
A night that changes nothing writes nothing, so the table versions stay put.

``as_of_date`` on silver/member_xref, silver/members, restricted/member_pii and
silver/identity_edges is the date of the run that last changed the row: an unchanged
row keeps its stamp, so the incremental and full paths leave the same tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.identity.setops import NEW, sided_difference
from jobs.schemas import table_schema

STAMP = "as_of_date"


def row_diff(
    new: DataFrame, current: DataFrame | None, name: str, scope: DataFrame | None = None
) -> DataFrame:
    """The rows of ``new`` and of table ``name`` (``current``) in one of them only, from
    one read of each (jobs.identity.setops.sided_difference over the table's columns but
    ``as_of_date``). ``current`` None: the table holds no row (a first run), so every
    row of ``new`` is new and nothing is compared. ``scope``: the key values (key
    columns) this run recomputed; current rows outside it are left out (None: the whole
    table). Output grain: one differing row; the columns plus ``_new``."""
    schema = table_schema(name)
    keys = list(schema.keys)
    cols = [c for c in schema.columns if c != STAMP]
    mine = new.select(*cols)
    if current is None:
        return mine.withColumn(NEW, F.lit(True))
    now = current.select(*cols)
    if scope is not None:
        now = now.join(scope.select(*keys).distinct(), keys, "left_semi")
    return sided_difference(mine, now)


def changes_of(diff: DataFrame, name: str, as_of: dt.date) -> DataFrame:
    """Rows to upsert or delete (:func:`row_changes`) from :func:`row_diff`: its new rows
    (stamped ``as_of``) and the keys of its current rows that have no new row (the
    others are the old versions of upserts). Reads ``diff`` three times: materialise it
    first."""
    schema = table_schema(name)
    keys = list(schema.keys)
    mine = diff.filter(F.col(NEW)).drop(NEW)
    upserts = mine.withColumn(STAMP, F.lit(as_of)).withColumn("_op", F.lit("upsert"))
    gone = diff.filter(~F.col(NEW)).select(*keys).join(mine.select(*keys), keys, "left_anti")
    deletes = gone.select(
        *[
            F.col(f.name) if f.name in keys else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.struct.fields
        ]
    ).withColumn("_op", F.lit("delete"))
    return upserts.select(*schema.columns, "_op").unionByName(deletes)


def row_changes(
    new: DataFrame,
    current: DataFrame | None,
    name: str,
    as_of: dt.date,
    scope: DataFrame | None = None,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Rows to upsert or delete so that ``name`` holds ``new``.

    ``new``: this run's rows of table ``name`` (its columns but ``as_of_date``), one per
    key; ``current``: the table now (None when it holds no row). ``scope``: the key
    values (key columns) this run recomputed; current rows outside it are left alone
    (None: the whole table). ``materialise(df, name)`` writes the difference once
    (:func:`changes_of` reads it three times); without it, it is computed again each time.
    Output grain: one key of ``name``; the table's columns plus ``_op`` (``upsert``:
    new or changed, stamped ``as_of``; ``delete``: in scope but no longer in ``new``,
    other columns null).

    At 1M members, a night's xref (4.7M rows, 24k changed) took 8.2 s as a
    ``subtract`` plus an anti-join of the keys (each input read twice) and takes 1.7 s
    so (one grouping of both, then joins of the few differing rows).
    """
    diff = row_diff(new, current, name, scope)
    if materialise is not None:
        diff = materialise(diff, f"{name.split('/')[-1]}_diff")
    return changes_of(diff, name, as_of)


def changed_members(xref_changes: DataFrame, current_xref: DataFrame) -> DataFrame:
    """Member ids whose identities changed: the new member of every upserted xref row
    and the old member of every changed or deleted one.

    Inputs: the xref row changes (:func:`row_changes`) and the xref before this run.
    Output grain: one member_id (not null).
    """
    keys = ["source", "source_key"]
    new_ids = xref_changes.filter(F.col("_op") == "upsert").select("member_id")
    old_ids = current_xref.join(xref_changes.select(*keys), keys, "left_semi").select("member_id")
    return new_ids.unionByName(old_ids).filter(F.col("member_id").isNotNull()).distinct()


def members_of_keys(xref: DataFrame, source: str, source_keys: DataFrame) -> DataFrame:
    """Member ids holding one of ``source_keys`` (column ``source_key``) of ``source``.

    Output grain: one member_id (not null)."""
    return (
        xref.filter((F.col("source") == source) & F.col("member_id").isNotNull())
        .join(source_keys.select("source_key").distinct(), "source_key", "left_semi")
        .select("member_id")
        .distinct()
    )
