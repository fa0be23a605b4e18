"""gold/member_points: the points programme per member as of D (CONTRACT 3 and 1.4).

Reads silver/points_ledger (one ledger transaction: txn_id, member_id, txn_date,
txn_type EARN | REDEEM | EXPIRE | ADJUST, points, and expire_date on EARN rows) and
writes one row per member with a ledger entry dated on or before D:

* ``balance``: EARN and ADJUST (signed) minus REDEEM and EXPIRE, all dates up to D
  (CONTRACT 1.4; a negative balance is kept as it is and counted in the step's figures);
* ``earned_365d``, ``redeemed_365d``, ``expired_365d``: EARN, REDEEM and EXPIRE points
  dated in [D-364, D]; ``adjusted_365d`` the net ADJUST points of that window;
* ``redeemed_share_365d``: redeemed_365d over earned_365d (null when nothing was earned);
* ``expiring_30d``: points of EARN rows whose ``expire_date`` is in [D+1, D+30] still
  held on D, when every REDEEM, EXPIRE and negative ADJUST uses the points that expire
  first (points without an expire_date, and positive adjustments, last). Exact for a
  programme where points earned later never expire earlier (yearly or rolling expiry);
* ``last_redemption_date`` and ``days_since_redemption`` (null: never redeemed).

A lake without silver/points_ledger (older lakes, a zone without loyalty files) gets no
gold/member_points: the step writes nothing and says so in its figures. The columns the
tag rules and segments may use (:data:`PREDICATE_COLUMNS`) are joined onto their rows by
:func:`with_points` (null for members without a ledger entry).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pydantic import Field
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import StrictModel, load_model
from jobs.context import RunContext
from jobs.gold.common import read_as_of, write_as_of
from jobs.schemas import table_schema

LEDGER = "silver/points_ledger"
TABLE = "gold/member_points"
# Columns of gold/member_points joined into the rows tag rules and segments run on.
PREDICATE_COLUMNS = (
    "balance",
    "earned_365d",
    "redeemed_365d",
    "expired_365d",
    "expiring_30d",
    "redeemed_share_365d",
    "last_redemption_date",
    "days_since_redemption",
)


class PointsWindows(StrictModel):
    """Window lengths in days; the column names keep the default's (earned_365d, ...)."""

    year_days: int = Field(365, ge=1)  # earned/redeemed/expired/adjusted_365d: [D-(n-1), D]
    expiring_days: int = Field(30, ge=1)  # expiring_30d: expire_date in [D+1, D+n]


class ReconciliationConf(StrictModel):
    """POS points against the ledger (the quality step, jobs.quality.points)."""

    days: int = Field(7, ge=1)  # POS orders of business dates [D-(n-1), D] are checked


class PointsConf(StrictModel):
    windows: PointsWindows = PointsWindows()
    reconciliation: ReconciliationConf = ReconciliationConf()


def load_points_conf(conf_dir: Path | None = None) -> PointsConf:
    return load_model("points.yaml", PointsConf, conf_dir)


# ---- pure transforms ------------------------------------------------------------------


def _sum_if(cond: Column, value: Column) -> Column:
    return F.coalesce(F.sum(F.when(cond, value)), F.lit(0)).cast("long")


def _debit() -> Column:
    """Points a row takes away: REDEEM, EXPIRE, and the size of a negative ADJUST."""
    t, p = F.col("txn_type"), F.col("points")
    return F.when(t.isin("REDEEM", "EXPIRE"), p).when((t == "ADJUST") & (p < 0), -p).otherwise(0)


def _signed() -> Column:
    """A row's effect on the balance: + EARN, - REDEEM and EXPIRE, ADJUST as signed."""
    t, p = F.col("txn_type"), F.col("points")
    return F.when(t.isin("EARN", "ADJUST"), p).when(t.isin("REDEEM", "EXPIRE"), -p).otherwise(0)


def member_points(ledger: DataFrame, as_of: dt.date, windows: PointsWindows) -> DataFrame:
    """One row per member with a ledger entry dated on or before D.

    Input: silver/points_ledger (one transaction, key txn_id; rows without a member_id
    are left out). Output grain: member x as_of_date, keys (member_id, as_of_date).
    """
    t, p, day = F.col("txn_type"), F.col("points"), F.col("txn_date")
    expire = F.col("expire_date") if "expire_date" in ledger.columns else F.lit(None)
    expire = expire.cast("date")
    d = F.lit(as_of)
    in_year = day >= F.date_sub(d, windows.year_days - 1)
    earn = t == "EARN"
    per_member = (
        ledger.filter(F.col("member_id").isNotNull() & (day <= d))
        .groupBy("member_id")
        .agg(
            F.sum(_signed()).cast("long").alias("balance"),
            _sum_if(earn & in_year, p).alias("earned_365d"),
            _sum_if((t == "REDEEM") & in_year, p).alias("redeemed_365d"),
            _sum_if((t == "EXPIRE") & in_year, p).alias("expired_365d"),
            _sum_if((t == "ADJUST") & in_year, p).alias("adjusted_365d"),
            F.sum(_debit()).cast("long").alias("_used"),
            _sum_if(earn & (expire <= d), p).alias("_lapse_by_d"),
            _sum_if(earn & (expire <= F.date_add(d, windows.expiring_days)), p).alias(
                "_lapse_by_end"
            ),
            F.max(F.when(t == "REDEEM", day)).alias("last_redemption_date"),
            F.min(day).alias("first_txn_date"),
            F.max(day).alias("last_txn_date"),
        )
    )
    return _finish(per_member, d, "expire_date" in ledger.columns)


def _finish(per_member: DataFrame, d: Column, has_expiry: bool) -> DataFrame:
    """Derived columns: expiring_30d (earliest-expiring points used first), shares, days."""
    used = F.col("_used")
    held_by_end = F.greatest(F.col("_lapse_by_end") - used, F.lit(0))
    held_by_d = F.greatest(F.col("_lapse_by_d") - used, F.lit(0))
    expiring = held_by_end - held_by_d if has_expiry else F.lit(None)  # null: no expire_date
    return per_member.select(
        "member_id",
        d.alias("as_of_date"),
        "balance",
        "earned_365d",
        "redeemed_365d",
        "expired_365d",
        "adjusted_365d",
        expiring.cast("long").alias("expiring_30d"),
        F.when(F.col("earned_365d") > 0, F.col("redeemed_365d") / F.col("earned_365d"))
        .cast("double")
        .alias("redeemed_share_365d"),
        "last_redemption_date",
        F.datediff(d, F.col("last_redemption_date")).alias("days_since_redemption"),
        "first_txn_date",
        "last_txn_date",
    )


def points_fields() -> list[T.StructField]:
    """Schema fields of :data:`PREDICATE_COLUMNS` (for validating predicates)."""
    fields = {f.name: f for f in table_schema(TABLE).struct.fields}
    return [fields[c] for c in PREDICATE_COLUMNS]


def with_points(ctx: RunContext, frame: DataFrame) -> DataFrame:
    """``frame`` (one row per member_id, grain unchanged) plus :data:`PREDICATE_COLUMNS` of D.

    Members without a ledger entry get nulls; so does everyone on a lake without
    gold/member_points (no loyalty ledger taken in).
    """
    if ctx.lake.exists(TABLE):
        points = read_as_of(ctx, TABLE).select("member_id", *PREDICATE_COLUMNS)
        return frame.join(points, "member_id", "left")
    return frame.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in points_fields()])


# ---- the step -------------------------------------------------------------------------


def run(ctx: RunContext) -> dict:
    if not ctx.lake.exists(LEDGER):
        return {"rows_out": 0, "note": f"no {LEDGER} in this lake: {TABLE} not written"}
    conf = load_points_conf()
    ledger = ctx.lake.read(LEDGER)
    write_as_of(ctx, member_points(ledger, ctx.as_of, conf.windows), TABLE)
    row = (
        read_as_of(ctx, TABLE)
        .agg(
            F.count(F.lit(1)).alias("members"),
            F.count(F.when(F.col("balance") < 0, F.lit(1))).alias("negative_balance"),
            F.coalesce(F.sum("balance"), F.lit(0)).alias("balance_total"),
            F.coalesce(F.sum("expiring_30d"), F.lit(0)).alias("expiring_30d_total"),
        )
        .first()
    )
    without_member = F.col("member_id").isNull() & (F.col("txn_date") <= F.lit(ctx.as_of))
    read = ledger.agg(
        F.count(F.lit(1)).alias("rows"), F.count(F.when(without_member, F.lit(1))).alias("lost")
    ).first()
    return {
        "rows_in": int(read["rows"]),
        "rows_out": int(row["members"]),
        "members_negative_balance": int(row["negative_balance"]),
        "balance_total": int(row["balance_total"]),
        "expiring_30d_total": int(row["expiring_30d_total"]),
        "ledger_rows_without_member": int(read["lost"]),
    }
