"""Time identity resolution at a given member count over synthetic bronze tables.

    uv run --frozen python bench/identity.py                # 100k members
    uv run --frozen python bench/identity.py --members 1000000
    uv run --frozen python bench/identity.py --members 3000 --days 21 --runs 2

Bronze rows are made in Spark from ``range`` (no Python per row): per member a CRM
record (phone, card, some e-mails and web accounts, 3% duplicate registrations
sharing the phone, 5% later phone changes), ~3 POS orders (card + phone, phone only,
anonymous, 1% on the cashiers' placeholder phone) and 1-2 devices logging in, plus
anonymous devices. Prints the step's figures: rounds and seconds of the connected
components and of the whole step. A second run on the same date (``--runs 2``)
shows the cost of an ordinary rerun and that no member id changes; ``--nightly`` runs
the day before the last (full first run), the last day (an incremental night) and a rerun.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import tempfile
import time
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F


def _fill(df: DataFrame, name: str) -> DataFrame:
    from jobs.schemas import table_schema

    s = table_schema(name)
    for f in s.struct.fields:
        if f.name not in df.columns:
            df = df.withColumn(f.name, F.lit(None).cast(f.dataType))
    return df.select(*s.columns)


def _card(member: Column) -> Column:
    """A member's card number: unique, and neighbours differ in many digits (sequential
    numbers would look like one-character typos of each other to the fuzzy rules)."""
    return F.concat(F.lit("K"), F.lpad((member * 104729 % 1000000007).cast("string"), 10, "0"))


def synth_bronze(spark: SparkSession, n: int, days: int, end: dt.date) -> dict[str, DataFrame]:
    start = end - dt.timedelta(days=days - 1)
    i = F.col("id")
    bday = F.date_add(F.lit(start), (i % days).cast("int"))
    ts = F.to_timestamp(F.concat(bday.cast("string"), F.lit(" 12:00:00")))
    phone = (F.lit(13000000000) + i * 7919 % 6999999999).cast("string")
    base = spark.range(n).select(
        i,
        F.concat(F.lit("C"), i.cast("string")).alias("crm_id"),
        _card(i).alias("member_card_no"),
        phone.alias("phone"),
        F.when(i % 2 == 0, F.concat(F.lit("e"), i.cast("string"), F.lit("@x.com"))).alias("email"),
        F.when(i % 5 < 2, F.concat(F.lit("u"), i.cast("string"))).alias("web_user_id"),
        F.concat(F.lit("N"), (i * 7907 % 50000).cast("string")).alias("name"),
        F.date_add(F.lit(dt.date(1960, 1, 1)), (i * 4391 % 15000).cast("int")).alias("birth_date"),
        F.concat(F.lit("city"), (i % 30).cast("string")).alias("city"),
        F.lit("active").alias("status"),
        F.lit(dt.datetime(2024, 1, 1)).alias("register_ts"),
        F.lit("store").alias("register_channel"),
        F.lit(start).alias("_business_date"),
        F.lit(dt.datetime.combine(start, dt.time(12))).alias("updated_ts"),
    )
    dups = base.filter(i % 100 < 3).select(
        F.concat(F.lit("D"), i.cast("string")).alias("crm_id"),
        "phone",
        F.upper("email").alias("email"),
        F.lit("active").alias("status"),
        F.lit(dt.datetime(2024, 1, 1)).alias("register_ts"),
        F.lit("app").alias("register_channel"),
        bday.alias("_business_date"),
        ts.alias("updated_ts"),
    )
    moved = base.filter(i % 100 >= 95).select(
        "crm_id",
        "member_card_no",
        (F.lit(15000000000) + i).cast("string").alias("phone"),
        "email",
        "web_user_id",
        "status",
        "register_ts",
        "register_channel",
        bday.alias("_business_date"),
        ts.alias("updated_ts"),
    )
    crm = base.drop("id").unionByName(dups, allowMissingColumns=True)
    crm = crm.unionByName(moved, allowMissingColumns=True)
    crm = crm.withColumn("_source_file", F.lit("synthetic")).withColumn("_line_no", F.lit(1))

    o = spark.range(3 * n).select(
        F.concat(F.lit("O"), i.cast("string")).alias("order_id"),
        (i % n).alias("m"),
        (i % 10).alias("kind"),
        bday.alias("order_date"),
    )
    mphone = (F.lit(13000000000) + F.col("m") * 7919 % 6999999999).cast("string")
    pos = o.select(
        "order_id",
        F.lit(1).alias("line_no"),
        F.lit("S01").alias("store_id"),
        F.to_timestamp(F.concat(F.col("order_date").cast("string"), F.lit(" 10:00:00"))).alias(
            "order_ts"
        ),
        "order_date",
        F.lit("SALE").alias("txn_type"),
        F.when(F.col("kind") < 5, _card(F.col("m"))).alias("member_card_no"),
        F.when(F.col("kind") == 9, F.lit("13800000000"))
        .when(F.col("kind") < 7, F.concat(F.lit("+86 "), mphone))
        .alias("phone"),
        F.lit("SKU").alias("sku"),
        F.lit("生鲜").alias("category"),
        F.lit(1).alias("qty"),
        F.lit(10).cast("decimal(12,2)").alias("unit_price"),
        F.lit(0).cast("decimal(12,2)").alias("discount"),
        F.lit(10).cast("decimal(12,2)").alias("amount"),
        F.col("order_date").alias("_business_date"),
        F.lit("synthetic").alias("_source_file"),
    )
    ev = spark.range(2 * n).select(
        F.concat(F.lit("E"), i.cast("string")).alias("event_id"),
        (i % n).alias("m"),
        (i % 7).alias("kind"),
        bday.alias("event_date"),
    )
    web = ev.select(
        "event_id",
        "event_date",
        F.to_timestamp(F.concat(F.col("event_date").cast("string"), F.lit(" 20:00:00"))).alias(
            "event_ts"
        ),
        F.concat(F.lit("A"), F.col("event_id")).alias("anonymous_id"),
        F.when((F.col("m") % 5 < 2) & (F.col("kind") < 5), F.concat(F.lit("u"), F.col("m"))).alias(
            "user_id"
        ),
        F.when((F.col("m") % 5 < 2) & (F.col("kind") < 5), F.lit("login"))
        .otherwise(F.lit("page_view"))
        .alias("event_type"),
        F.lit("app").alias("channel"),
        F.col("event_date").alias("_business_date"),
        F.lit("synthetic").alias("_source_file"),
    )
    return {
        "bronze/crm_members": _fill(crm, "bronze/crm_members"),
        "bronze/pos_lines": _fill(pos, "bronze/pos_lines"),
        "bronze/web_events": _fill(web, "bronze/web_events"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--million", action="store_true", help="shorthand for --members 1000000")
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--runs", type=int, default=1, help="runs on the same date (2: rerun cost)")
    ap.add_argument("--dir", type=Path, default=None, help="keep the lake here")
    ap.add_argument(
        "--nightly",
        action="store_true",
        help="first run for the day before the last, then the last day (an ordinary "
        "incremental night: one new day of bronze), then a rerun of it",
    )
    args = ap.parse_args()
    n = 1_000_000 if args.million else args.members

    from jobs.config import load_settings, with_paths
    from jobs.context import make_context
    from jobs.identity.job import run

    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_identity_"))
    key_file = root / "pii.key"  # the bench writes bronze itself: the key must exist first
    if not key_file.exists():
        root.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
    settings = with_paths(load_settings(), lake=root / "lake", work=root / "work")
    settings = settings.model_copy(
        update={"privacy": settings.privacy.model_copy(update={"key_file": root / "pii.key"})}
    )
    end = dt.date(2026, 11, 30)
    ctx = make_context(settings, end)
    t0 = time.perf_counter()
    for name, df in synth_bronze(ctx.spark, n, args.days, end).items():
        ctx.lake.overwrite(df, name)
    print(f"bronze for {n} members x {args.days} days written in {time.perf_counter() - t0:.1f}s")
    dates = [end] * args.runs
    if args.nightly:
        dates = [end - dt.timedelta(days=1), end, end]
    for r, d in enumerate(dates):
        ctx = make_context(settings, d)
        t1 = time.perf_counter()
        figures = run(ctx)
        secs = time.perf_counter() - t1
        keep = ("mode", "rows_in", "members", "edges", "blocked_values", "merges", "splits",
                "cc_nodes", "cc_rounds", "cc_seconds", "graph_seconds", "refused_merges",
                "refused_merges_cap")  # fmt: skip
        print(f"run {r + 1} ({d}): {secs:.1f}s " + json.dumps({k: figures.get(k) for k in keep}))
    print(f"lake: {root}")


if __name__ == "__main__":
    main()
