"""gold/kpi_daily: one row of programme KPIs per business date (CONTRACT 4).

Every share is kept with its numerator and denominator so a dashboard can add
dates up correctly (a sum of ratios is not a ratio). A share with a zero
denominator is null, not 0.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.gold.common import read_as_of


def _count_if(cond: Column) -> Column:
    return F.sum(F.when(cond, F.lit(1)).otherwise(F.lit(0))).cast("long")


def _share(num: str, den: str) -> Column:
    return F.when(F.col(den) > 0, F.col(num) / F.col(den)).cast("double")


def member_kpis(features: DataFrame, as_of: dt.date) -> DataFrame:
    """Member counts from gold/member_features of D (one row per member) -> one row."""
    omni = (F.col("store_purchases_365d") > 0) & (F.col("online_purchases_365d") > 0)
    return features.agg(
        F.count(F.lit(1)).cast("long").alias("members_total"),
        _count_if(F.col("first_seen") == F.lit(as_of)).alias("members_new"),
        _count_if(F.col("frequency_30d") >= 1).alias("members_active_30d"),
        _count_if(F.col("frequency_365d") >= 1).alias("members_buyers_365d"),
        _count_if(F.col("frequency_365d") >= 2).alias("members_repeat_365d"),
        _count_if(omni).alias("members_omnichannel_365d"),
    )


def identity_kpis(xref: DataFrame, as_of: dt.date) -> DataFrame:
    """Source identities sharing a member_id with another one.

    Input: silver/member_xref (one source identity; member_id null for anonymous
    devices), restricted to identities first seen on or before D. Output: one row.
    """
    per_member = (
        xref.filter((F.col("first_seen") <= F.lit(as_of)) | F.col("first_seen").isNull())
        # One row per (source, source_key) in silver; distinct() drops exact copies and is
        # far cheaper than dropDuplicates on Sail 0.7.2 (a first() per column).
        .select("source", "source_key", "member_id")
        .distinct()
        .groupBy("member_id")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    shared = F.col("member_id").isNotNull() & (F.col("n") >= 2)
    return per_member.agg(
        F.coalesce(F.sum("n"), F.lit(0)).cast("long").alias("source_identities"),
        F.coalesce(F.sum(F.when(shared, F.col("n"))), F.lit(0))
        .cast("long")
        .alias("source_identities_shared"),
    )


def pos_kpis(orders: DataFrame, as_of: dt.date) -> DataFrame:
    """POS purchases in [D-29, D], with and without a member (silver/orders -> one row)."""
    pos = (
        orders.filter(
            (F.col("source") == "pos")
            & F.coalesce(F.col("is_purchase"), F.lit(False))
            & (F.col("order_date") <= F.lit(as_of))
            & (F.col("order_date") >= F.date_sub(F.lit(as_of), 29))
        )
        .select("order_id", "channel", "member_id")
        .distinct()
    )  # one row per order key
    return pos.agg(
        F.count(F.lit(1)).cast("long").alias("pos_purchases_30d"),
        _count_if(F.col("member_id").isNotNull()).alias("pos_member_purchases_30d"),
    )


def quarantine_kpis(manifest: DataFrame, as_of: dt.date) -> DataFrame:
    """Rows received and quarantined for business date D (meta/ingest_manifest -> one row)."""
    day = manifest.filter(F.col("business_date") == F.lit(as_of))
    return day.agg(
        F.coalesce(F.sum("rows_total"), F.lit(0)).cast("long").alias("rows_received"),
        F.coalesce(F.sum("rows_bad"), F.lit(0)).cast("long").alias("rows_quarantined"),
    )


def kpis(
    features: DataFrame,
    orders: DataFrame,
    xref: DataFrame,
    manifest: DataFrame,
    as_of: dt.date,
) -> DataFrame:
    """gold/kpi_daily for D.

    Inputs: gold/member_features of D, silver/orders, silver/member_xref,
    meta/ingest_manifest. Output grain: one row, key as_of_date.
    """
    row = (
        member_kpis(features, as_of)
        .crossJoin(identity_kpis(xref, as_of))
        .crossJoin(pos_kpis(orders, as_of))
        .crossJoin(quarantine_kpis(manifest, as_of))
    )
    return row.select(
        F.lit(as_of).alias("as_of_date"),
        "*",
        _share("members_active_30d", "members_total").alias("active_30d_share"),
        _share("members_repeat_365d", "members_buyers_365d").alias("repurchase_rate"),
        _share("members_omnichannel_365d", "members_buyers_365d").alias("cross_channel_share"),
        _share("source_identities_shared", "source_identities").alias("identity_merge_rate"),
        _share("pos_member_purchases_30d", "pos_purchases_30d").alias("pos_member_share"),
        _share("rows_quarantined", "rows_received").alias("quarantine_rate"),
    )


def run(ctx: RunContext) -> dict:
    as_of = ctx.as_of
    first_month = (as_of - dt.timedelta(days=29)).strftime("%Y-%m")
    orders = ctx.lake.read("silver/orders").filter(
        (F.col("order_month") >= first_month) & (F.col("order_month") <= as_of.strftime("%Y-%m"))
    )
    df = kpis(
        read_as_of(ctx, "gold/member_features"),
        orders,
        ctx.lake.read("silver/member_xref"),
        ctx.lake.read("meta/ingest_manifest"),
        as_of,
    )
    ctx.lake.replace_where(df, "gold/kpi_daily", f"as_of_date = '{ctx.as_of_str}'")
    row = read_as_of(ctx, "gold/kpi_daily").first()
    figures = row.asDict() if row else {}
    figures.pop("as_of_date", None)
    return {"rows_out": 1 if row else 0, **figures}
