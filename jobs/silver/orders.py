"""Pipeline step `orders`: silver/orders, silver/order_lines and silver/web_events with
the member of each order and event (from silver/member_xref, written by `identity`).

POS orders are the lines of one order_id; online orders are web ``purchase`` events.
Pure transforms below; I/O only in :func:`run`. The tables are rebuilt from bronze
each night because member ids move when members merge or split.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.identity import normalize as N
from jobs.privacy.pii import hmac_col

MONEY = "decimal(14,2)"


def _xref_of(xref: DataFrame, source: str, alias: str) -> DataFrame:
    return xref.filter((F.col("source") == source) & F.col("member_id").isNotNull()).select(
        F.col("source_key").alias(f"{alias}_key"), F.col("member_id").alias(f"{alias}_member")
    )


def dedupe_pos_lines(pos: DataFrame) -> DataFrame:
    """One row per (order_id, line_no): the latest delivery of a re-sent line wins.

    Input/output grain: one POS line (bronze/pos_lines).
    """
    w = Window.partitionBy("order_id", "line_no").orderBy(
        F.col("_ingested_at").desc_nulls_last(),
        F.col("_source_file").desc_nulls_last(),
        F.col("_line_no").desc_nulls_last(),
    )
    return pos.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1").drop("_rn")


def pos_lines_with_member(pos: DataFrame, xref: DataFrame, key: bytes) -> DataFrame:
    """POS lines with the member of their order: the card's member, else the phone's.

    Input: deduplicated bronze POS lines (one line), silver/member_xref (one source
    identity). Output grain: one POS line, plus ``member_id``. A blocked phone (the
    cashiers' placeholder) has no member, so its orders stay anonymous.
    """
    per_order = pos.groupBy("order_id").agg(
        F.max(N.norm_card(F.col("member_card_no"))).alias("card_key"),
        F.max(N.norm_phone(F.col("phone"))).alias("phone_n"),
    )
    per_order = (
        per_order.withColumn("phone_key", hmac_col(F.col("phone_n"), key))
        .join(_xref_of(xref, "pos_card", "card"), "card_key", "left")
        .join(_xref_of(xref, "pos_phone", "phone"), "phone_key", "left")
        .select("order_id", F.coalesce("card_member", "phone_member").alias("member_id"))
    )
    return pos.join(per_order, "order_id", "left")


def pos_orders(lines: DataFrame) -> DataFrame:
    """POS orders at order grain (keys order_id, channel='store').

    Input: POS lines with member (one line). SALE/RETURN from the lines; gross is the
    list value sum(qty * unit_price), discount sum(discount), net sum(amount) (for a
    RETURN the money given back).
    """
    gross = (F.col("qty") * F.col("unit_price")).cast(MONEY)
    return lines.groupBy("order_id").agg(
        F.lit("pos").alias("source"),
        F.lit("store").alias("channel"),
        F.lit(False).alias("is_online"),
        F.max("txn_type").alias("txn_type"),
        (F.max("txn_type") == "SALE").alias("is_purchase"),
        F.max("ref_order_id").alias("ref_order_id"),
        F.max("member_id").alias("member_id"),
        F.max("store_id").alias("store_id"),
        F.min("order_ts").alias("order_ts"),
        F.min("order_date").alias("order_date"),
        F.sum(gross).cast(MONEY).alias("gross_amount"),
        F.sum(F.coalesce(F.col("discount"), F.lit(0))).cast(MONEY).alias("discount_amount"),
        F.sum("amount").cast(MONEY).alias("net_amount"),
        F.count(F.lit(1)).cast("int").alias("n_lines"),
        F.sum("qty").cast("long").alias("n_items"),
        F.array_sort(F.collect_set("category")).alias("categories"),
        F.max("payment_method").alias("payment_method"),
    )


def pos_order_lines(lines: DataFrame) -> DataFrame:
    """POS lines in the silver shape (keys order_id, channel='store', line_no)."""
    return lines.select(
        "order_id",
        "line_no",
        F.lit("store").alias("channel"),
        F.lit(False).alias("is_online"),
        "txn_type",
        (F.col("txn_type") == "SALE").alias("is_purchase"),
        "member_id",
        "order_ts",
        "order_date",
        "sku",
        "category",
        "qty",
        (F.col("qty") * F.col("unit_price")).cast(MONEY).alias("gross_amount"),
        F.coalesce(F.col("discount"), F.lit(0)).cast(MONEY).alias("discount_amount"),
        F.col("amount").cast(MONEY).alias("net_amount"),
    )


def web_events_with_member(web: DataFrame, xref: DataFrame) -> DataFrame:
    """Web events with the member of their account, else of their device.

    Input: bronze/web_events (one event), silver/member_xref. Output grain: one event.
    """
    return (
        web.withColumn("user_key", N.norm_text_id(F.col("user_id")))
        .withColumn("anon_key", N.norm_text_id(F.col("anonymous_id")))
        .join(_xref_of(xref, "web_user", "user"), "user_key", "left")
        .join(_xref_of(xref, "web_anon", "anon"), "anon_key", "left")
        .withColumn("member_id", F.coalesce("user_member", "anon_member"))
        .drop("user_key", "anon_key", "user_member", "anon_member")
    )


def online_orders(events: DataFrame) -> DataFrame:
    """Online orders: one per (order_id, channel) of ``purchase`` events, the first event
    wins (a purchase sent twice with two event ids is still one order).

    Input: web events with member (one event). Output grain: one online order.
    """
    p = events.filter((F.col("event_type") == "purchase") & F.col("order_id").isNotNull())
    w = Window.partitionBy("order_id", "channel").orderBy("event_ts", "event_id")
    p = p.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1")
    amount = F.col("revenue").cast(MONEY)
    return p.select(
        "order_id",
        F.lit("web").alias("source"),
        "channel",
        F.lit(True).alias("is_online"),
        F.lit("SALE").alias("txn_type"),
        F.lit(True).alias("is_purchase"),
        F.lit(None).cast("string").alias("ref_order_id"),
        "member_id",
        F.lit(None).cast("string").alias("store_id"),
        F.col("event_ts").alias("order_ts"),
        F.col("event_date").alias("order_date"),
        amount.alias("gross_amount"),
        F.lit(0).cast(MONEY).alias("discount_amount"),
        amount.alias("net_amount"),
        F.lit(1).cast("int").alias("n_lines"),
        F.lit(1).cast("long").alias("n_items"),
        F.when(F.col("category").isNotNull(), F.array("category"))
        .otherwise(F.array().cast("array<string>"))
        .alias("categories"),
        F.lit(None).cast("string").alias("payment_method"),
        "sku",
        "category",
    )


def online_order_lines(orders: DataFrame) -> DataFrame:
    """The one line of each online order (line_no 1)."""
    return orders.select(
        "order_id",
        F.lit(1).alias("line_no"),
        "channel",
        "is_online",
        "txn_type",
        "is_purchase",
        "member_id",
        "order_ts",
        "order_date",
        "sku",
        "category",
        F.lit(1).alias("qty"),
        "gross_amount",
        "discount_amount",
        "net_amount",
    )


def _month(df: DataFrame) -> DataFrame:
    return df.withColumn("order_month", F.date_format("order_date", "yyyy-MM"))


def build(
    pos: DataFrame, web: DataFrame, xref: DataFrame, key: bytes
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """orders, order_lines and web_events (see each transform for grain and keys)."""
    lines = pos_lines_with_member(dedupe_pos_lines(pos), xref, key)
    events = web_events_with_member(web, xref)
    online = online_orders(events)
    orders = _month(pos_orders(lines).unionByName(online.drop("sku", "category")))
    order_lines = _month(pos_order_lines(lines).unionByName(online_order_lines(online)))
    return orders, order_lines, events


def run(ctx: RunContext) -> dict:
    """Pipeline step: rebuild the silver order and event tables as of ``ctx.as_of``."""
    d: dt.date = ctx.as_of
    lake = ctx.lake
    pos = lake.read("bronze/pos_lines").filter(F.col("_business_date") <= F.lit(d))
    web = lake.read("bronze/web_events").filter(F.col("_business_date") <= F.lit(d))
    xref = lake.read("silver/member_xref")
    orders, lines, events = build(pos, web, xref, ctx.pii_key)
    lake.overwrite(orders, "silver/orders")
    lake.overwrite(lines, "silver/order_lines")
    lake.overwrite(events, "silver/web_events")
    o = lake.read("silver/orders")
    agg = o.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.col("member_id").isNotNull().cast("int")).alias("with_member"),
        F.sum((~F.col("is_online")).cast("int")).alias("pos"),
    ).collect()[0]
    return {
        "rows_in": pos.count() + web.count(),
        "rows_out": agg["n"],
        "orders_pos": agg["pos"] or 0,
        "orders_online": (agg["n"] or 0) - (agg["pos"] or 0),
        "orders_with_member": agg["with_member"] or 0,
        "order_lines": lake.read("silver/order_lines").count(),
        "web_events": lake.read("silver/web_events").count(),
    }
