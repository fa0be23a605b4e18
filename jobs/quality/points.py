"""POS points against the loyalty ledger (part of the quality step): counted and listed,
never fixed.

A POS order's ``points_earned`` and ``points_redeemed`` (summed over its lines, empty
as 0) should equal the ledger's EARN and REDEEM points booked with the same
``order_id`` (CONTRACT 1.1 and 1.4). Every POS order of the business dates
[D-(n-1), D] (``reconciliation.days`` in conf/points.yaml) is checked against the whole
ledger each night, so a ledger row booked a day late clears the order the next night.
The orders that differ on D are written to ``meta/points_reconciliation`` (D's rows
replaced on a rerun) with ``issue``:

* ``no_ledger_entry``: the till printed points but the ledger has no row for the order;
* ``points_differ``: both have the order, with other points.

Ledger rows of orders that are not POS orders of the window (online orders, older
orders) are not checked. Without bronze/loyalty_ledger (no loyalty source taken in)
nothing is checked and the figures say so.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.gold.points import load_points_conf

POS = "bronze/pos_lines"
LEDGER = "bronze/loyalty_ledger"
TABLE = "meta/points_reconciliation"
CHECKED = "(orders checked)"  # not an issue: the count of orders compared, in the same query


def _total(col: str | Column) -> Column:
    return F.coalesce(F.sum(col), F.lit(0)).cast("long")


def pos_points(lines: DataFrame, first: dt.date, last: dt.date) -> DataFrame:
    """POS orders of business dates [first, last] with their points.

    Input: bronze/pos_lines (one order line). Output grain: one order, key order_id.
    """
    return (
        lines.filter(F.col("_business_date").between(F.lit(first), F.lit(last)))
        .groupBy("order_id")
        .agg(
            F.min("store_id").alias("store_id"),
            F.min("_business_date").alias("business_date"),
            _total("points_earned").alias("pos_points_earned"),
            _total("points_redeemed").alias("pos_points_redeemed"),
        )
    )


def ledger_points(ledger: DataFrame) -> DataFrame:
    """EARN and REDEEM points per order. Input: bronze/loyalty_ledger (one transaction,
    key txn_id). Output grain: one order_id (rows without one are left out)."""
    kind = F.col("txn_type")
    return (
        ledger.filter(F.col("order_id").isNotNull() & kind.isin("EARN", "REDEEM"))
        .groupBy("order_id")
        .agg(
            _total(F.when(kind == "EARN", F.col("points"))).alias("ledger_points_earned"),
            _total(F.when(kind == "REDEEM", F.col("points"))).alias("ledger_points_redeemed"),
        )
    )


def differences(pos: DataFrame, ledger: DataFrame, as_of: dt.date) -> DataFrame:
    """POS orders whose points differ from the ledger's, one row per order (key order_id).

    Inputs: :func:`pos_points` and :func:`ledger_points` (one row per order each).
    """
    led_earned, led_redeemed = F.col("ledger_points_earned"), F.col("ledger_points_redeemed")
    joined = pos.join(ledger, "order_id", "left").select(
        "*", led_earned.isNotNull().alias("_in_ledger")
    )
    joined = joined.fillna(0, ["ledger_points_earned", "ledger_points_redeemed"])
    differ = (F.col("pos_points_earned") != led_earned) | (
        F.col("pos_points_redeemed") != led_redeemed
    )
    return joined.filter(differ).select(
        F.lit(as_of).alias("as_of_date"),
        "order_id",
        "store_id",
        "business_date",
        "pos_points_earned",
        "ledger_points_earned",
        "pos_points_redeemed",
        "ledger_points_redeemed",
        F.when(F.col("_in_ledger"), F.lit("points_differ"))
        .otherwise(F.lit("no_ledger_entry"))
        .alias("issue"),
    )


def reconcile(ctx: RunContext) -> DataFrame | None:
    """Write D's differing orders to meta/points_reconciliation.

    Returns the query of its figures, collected by the quality step with its own (one
    row per issue with its orders ``n``, and the orders compared under CHECKED; see
    :func:`figures`), or None when there is no ledger or no POS to compare.
    """
    if not ctx.lake.exists(LEDGER) or not ctx.lake.exists(POS):
        return None
    days = load_points_conf().reconciliation.days
    first = ctx.as_of - dt.timedelta(days=days - 1)
    pos = pos_points(ctx.lake.read(POS), first, ctx.as_of)
    # Only the ledger rows of the window's orders are summed (the ledger is read once).
    ledger = ctx.lake.read(LEDGER).join(pos.select("order_id"), "order_id", "left_semi")
    found = differences(pos, ledger_points(ledger), ctx.as_of)
    ctx.lake.replace_where(found, TABLE, f"as_of_date = '{ctx.as_of_str}'")
    written = ctx.lake.read(TABLE).filter(F.col("as_of_date") == F.lit(ctx.as_of))
    issues = written.select("issue").unionByName(pos.select(F.lit(CHECKED).alias("issue")))
    return issues.groupBy("issue").agg(F.count(F.lit(1)).alias("n"))


def figures(rows: list[dict] | None) -> dict:
    """The quality figures of the reconciliation from the rows of :func:`reconcile`'s query
    (None: not checked)."""
    if rows is None:
        return {"points_reconciliation": f"not checked: no {LEDGER} or {POS}"}
    by_issue = {r["issue"]: int(r["n"]) for r in rows}
    checked = by_issue.pop(CHECKED, 0)
    return {
        "points_orders_checked": checked,
        "points_orders_differ": sum(by_issue.values()),
        "points_orders_by_issue": by_issue,
    }
