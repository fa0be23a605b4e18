"""gold/kpi_daily: one row of programme KPIs per business date (CONTRACT 4).

Every share is kept with its numerator and denominator so a dashboard can add
dates up correctly (a sum of ratios is not a ratio). A share with a zero
denominator is null, not 0. The seed documents' operating KPIs (mau_share,
retention_7d, ...) take their windows from conf/kpis.yaml, which also holds each
one's target (shown by the run report and `cdp kpis`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.columns import any_true
from jobs.config import StrictModel, load_model
from jobs.context import RunContext
from jobs.gold.common import read_as_of
from jobs.identity.state import xref_as_written
from jobs.silver.orders import WEB_KEYS, attach_member

# The seed documents' operating KPIs (CONTRACT 4), each with a target in conf/kpis.yaml.
SEED_KPIS = (
    "mau_share",
    "retention_7d",
    "points_redemption_rate",
    "cross_channel_share",
    "sync_success_rate",
    "duplicate_rate",
    "behaviour_coverage",
    "member_growth_30d",
    "first_purchase_rate_30d",
    "tag_coverage",
    "clv_365d_avg",
)


class KpiWindows(StrictModel):
    """Window lengths in days (the column names keep the default's, e.g. retention_7d)."""

    active_days: int = Field(30, ge=1)  # mau_share: activity in [D-(n-1), D]
    retention_days: int = Field(7, ge=1)  # active in the n days before the last n, and again
    growth_days: int = Field(30, ge=1)  # member_growth_30d: members now over members on D-n
    first_purchase_days: int = Field(30, ge=1)  # registered in [D-(2n-1), D-n], bought in n
    pos_member_days: int = Field(30, ge=1)  # pos_member_share
    points_days: int = Field(365, ge=1)  # points_redemption_rate
    basket_days: int = Field(30, ge=1)  # basket_attach_rate: items per purchase order


class KpiTarget(StrictModel):
    """A KPI's target: a value, or a change over a baseline (a value or the first on record)."""

    description: str = ""
    better: Literal["higher", "lower"] = "higher"
    target: float | None = None
    target_change: float | None = None
    baseline: float | Literal["first"] | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_target(self) -> KpiTarget:
        if (self.target is None) == (self.target_change is None):
            raise ValueError("give either target or target_change (with baseline)")
        if (self.target_change is None) != (self.baseline is None):
            raise ValueError("target_change and baseline go together")
        return self

    def resolve(self, first_on_record: float | None) -> float | None:
        """The target value; None for a 'first' baseline with nothing on record yet."""
        if self.target is not None:
            return self.target
        base = first_on_record if self.baseline == "first" else self.baseline
        return None if base is None else float(base) * (1 + float(self.target_change or 0))


class KpisConf(StrictModel):
    windows: KpiWindows = KpiWindows()
    targets: dict[str, KpiTarget]

    @model_validator(mode="after")
    def _every_seed_kpi(self) -> KpisConf:
        unknown = sorted(set(self.targets) - set(SEED_KPIS))
        missing = [k for k in SEED_KPIS if k not in self.targets]
        if unknown or missing:
            raise ValueError(f"targets: unknown KPI(s) {unknown}, missing {missing}")
        return self


def load_kpis(conf_dir: Path | None = None) -> KpisConf:
    return load_model("kpis.yaml", KpisConf, conf_dir)


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


def xref_kpis(
    xref: DataFrame, features: DataFrame, as_of: dt.date, unique: bool = False
) -> DataFrame:
    """Source identities sharing a member_id with another one, CRM records sharing a
    member, and members with web/app behaviour linked -> one row, from one grouping of
    the xref by member (two groupings, each of the whole xref, took 2.5-3.1 s at 1M
    members; this one 1.0 s).

    Input: silver/member_xref (one source identity; member_id null for anonymous
    devices), restricted to identities first seen on or before D, exact copies counted
    once unless ``unique`` (jobs.identity.state.xref_as_written); gold/member_features
    of D for the members.
    """
    known = xref.filter(
        (F.col("first_seen") <= F.lit(as_of)) | F.col("first_seen").isNull()
    ).select("source", "source_key", "member_id")
    if not unique:
        # distinct(), not dropDuplicates: on Sail 0.7.2 the latter is a first() per column.
        known = known.distinct()
    per_member = known.groupBy("member_id").agg(
        F.count(F.lit(1)).alias("n"),
        _count_if(F.col("source") == "crm").alias("n_crm"),
        any_true(F.col("source").isin("web_user", "web_anon")).alias("web"),
    )
    current = features.select("member_id", F.lit(True).alias("current")).distinct()
    member = F.col("member_id").isNotNull()
    return per_member.join(current, "member_id", "left").agg(
        F.coalesce(F.sum("n"), F.lit(0)).cast("long").alias("source_identities"),
        F.coalesce(F.sum(F.when(member & (F.col("n") >= 2), F.col("n"))), F.lit(0))
        .cast("long")
        .alias("source_identities_shared"),
        F.coalesce(F.sum(F.when(member, F.col("n_crm"))), F.lit(0))
        .cast("long")
        .alias("crm_records"),
        F.coalesce(F.sum(F.when(member & (F.col("n_crm") >= 2), F.col("n_crm"))), F.lit(0))
        .cast("long")
        .alias("crm_records_duplicated"),
        _count_if(member & F.col("web") & F.col("current").isNotNull()).alias(
            "members_with_behaviour"
        ),
    )


def pos_kpis(orders: DataFrame, as_of: dt.date, days: int = 30) -> DataFrame:
    """POS purchases in [D-(days-1), D], with and without a member (silver/orders -> one row)."""
    pos = (
        orders.filter(
            (F.col("source") == "pos")
            & F.coalesce(F.col("is_purchase"), F.lit(False))
            & (F.col("order_date") <= F.lit(as_of))
            & (F.col("order_date") >= F.date_sub(F.lit(as_of), days - 1))
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


def _between(col: str, as_of: dt.date, first_back: int, last_back: int) -> Column:
    """``col`` dated in [D-first_back, D-last_back]."""
    return (F.col(col) >= F.date_sub(F.lit(as_of), first_back)) & (
        F.col(col) <= F.date_sub(F.lit(as_of), last_back)
    )


def activity_kpis(
    features: DataFrame, orders: DataFrame, events: DataFrame, as_of: dt.date, w: KpiWindows
) -> DataFrame:
    """Members active (a purchase or any web/app event, a login included) -> one row.

    Inputs: gold/member_features of D (the members), silver/orders, silver/web_events
    with member_id attached. mau: active in [D-(a-1), D]; retention: active in
    [D-(2r-1), D-r] (the base) and again in [D-(r-1), D] (kept).
    """
    a, r = w.active_days, w.retention_days
    back = max(a, 2 * r) - 1
    bought = orders.filter(
        F.col("member_id").isNotNull() & F.coalesce(F.col("is_purchase"), F.lit(False))
    ).select("member_id", F.col("order_date").alias("day"))
    seen = events.filter(F.col("member_id").isNotNull()).select(
        "member_id", F.col("event_date").alias("day")
    )
    per_member = (
        bought.unionByName(seen)
        .filter(_between("day", as_of, back, 0))
        .groupBy("member_id")
        .agg(
            any_true(_between("day", as_of, a - 1, 0)).alias("mau"),
            any_true(_between("day", as_of, 2 * r - 1, r)).alias("base"),
            any_true(_between("day", as_of, r - 1, 0)).alias("now"),
        )
        .join(features.select("member_id"), "member_id", "left_semi")
    )
    return per_member.agg(
        _count_if(F.col("mau")).alias("members_active_mau"),
        _count_if(F.col("base")).alias("retention_base_7d"),
        _count_if(F.col("base") & F.col("now")).alias("retention_kept_7d"),
    )


def first_purchase_kpis(
    features: DataFrame, members: DataFrame, orders: DataFrame, as_of: dt.date, days: int
) -> DataFrame:
    """Members registered in [D-(2n-1), D-n] and those of them with a purchase dated in
    [registration day, registration day + n-1] (n = ``days``) -> one row."""
    cohort = (
        members.select("member_id", F.to_date("register_ts").alias("registered"))
        .filter(_between("registered", as_of, 2 * days - 1, days))
        .join(features.select("member_id"), "member_id", "left_semi")
    )
    bought = orders.filter(
        F.col("member_id").isNotNull() & F.coalesce(F.col("is_purchase"), F.lit(False))
    ).select("member_id", "order_date")
    converted = (
        cohort.join(bought, "member_id")
        .filter(F.datediff("order_date", "registered").between(0, days - 1))
        .select("member_id")
        .distinct()
    )
    return cohort.agg(F.count(F.lit(1)).cast("long").alias("registered_cohort_30d")).crossJoin(
        converted.agg(F.count(F.lit(1)).cast("long").alias("cohort_first_purchase_30d"))
    )


def member_growth_kpis(features: DataFrame, as_of: dt.date, days: int) -> DataFrame:
    """Members known on D-n (first_seen on or before it), among today's members -> one row."""
    return features.agg(
        _count_if(F.col("first_seen") <= F.date_sub(F.lit(as_of), days)).alias(
            "members_total_30d_ago"
        )
    )


def coverage_kpis(features: DataFrame, tags: DataFrame, value: DataFrame) -> DataFrame:
    """Members holding a tag on D, and the mean clv_365d of buyers -> one row.

    Inputs: gold/member_tags and gold/member_value of D (member x tag, member).
    """
    tagged = (
        tags.select("member_id")
        .distinct()
        .join(features.select("member_id"), "member_id", "left_semi")
        .agg(F.count(F.lit(1)).cast("long").alias("members_tagged"))
    )
    # Averaged in decimal: a sum of doubles depends on the order rows arrive in, and a
    # rerun of D must write the same bits.
    exact = F.col("clv_365d").cast("decimal(24,6)")
    clv = value.agg(F.avg(exact).cast("double").alias("clv_365d_avg"))
    return tagged.crossJoin(clv)


def basket_kpis(orders: DataFrame, as_of: dt.date, days: int) -> DataFrame:
    """Items per purchase order in [D-(n-1), D], all purchases (members or not) -> one row.

    Input: silver/orders (one order, keys order_id + channel; n_items: units bought).
    A tracked figure without a target (conf/kpis.yaml targets hold the seed KPIs only).
    """
    bought = (
        orders.filter(
            F.coalesce(F.col("is_purchase"), F.lit(False))
            & _between("order_date", as_of, days - 1, 0)
        )
        .select("order_id", "channel", "n_items")
        .distinct()  # one row per order key (see xref_kpis: not dropDuplicates)
    )
    return bought.agg(
        F.count(F.lit(1)).cast("long").alias("basket_orders_30d"),
        F.coalesce(F.sum("n_items"), F.lit(0)).cast("long").alias("basket_items_30d"),
    ).select("*", _share("basket_items_30d", "basket_orders_30d").alias("basket_attach_rate"))


def points_kpis(ledger: DataFrame | None, as_of: dt.date, days: int) -> DataFrame | None:
    """Points earned and redeemed in [D-(n-1), D] from silver/points_ledger -> one row.

    None without a ledger (the loyalty source is not taken in yet): the columns are null.
    """
    if ledger is None:
        return None
    window = ledger.filter(_between("txn_date", as_of, days - 1, 0))
    return window.agg(
        F.coalesce(F.sum(F.when(F.col("txn_type") == "EARN", F.col("points"))), F.lit(0))
        .cast("long")
        .alias("points_earned_365d"),
        F.coalesce(F.sum(F.when(F.col("txn_type") == "REDEEM", F.col("points"))), F.lit(0))
        .cast("long")
        .alias("points_redeemed_365d"),
    )


def kpis(
    features: DataFrame,
    orders: DataFrame,
    xref: DataFrame,
    manifest: DataFrame,
    as_of: dt.date,
    pos_days: int = 30,
    xref_unique: bool = False,
) -> DataFrame:
    """The programme KPIs of gold/kpi_daily for D (the seed KPIs: :func:`seed_kpis`).

    Inputs: gold/member_features of D, silver/orders, silver/member_xref (one row per
    identity when ``xref_unique``), meta/ingest_manifest. Output grain: one row, key
    as_of_date.
    """
    row = (
        member_kpis(features, as_of)
        .crossJoin(xref_kpis(xref, features, as_of, xref_unique))
        .crossJoin(pos_kpis(orders, as_of, pos_days))
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


def seed_kpis(
    base: DataFrame,
    parts: list[DataFrame],
    points: DataFrame | None,
) -> DataFrame:
    """``base`` (the row of :func:`kpis`) plus the seed KPIs from the one-row ``parts``.

    cross_channel_share is already in ``base``; points columns are null without a ledger.
    """
    row = base
    for part in parts:
        row = row.crossJoin(part)
    if points is None:
        row = row.select(
            "*",
            F.lit(None).cast("long").alias("points_earned_365d"),
            F.lit(None).cast("long").alias("points_redeemed_365d"),
        )
    else:
        row = row.crossJoin(points)
    growth = F.when(
        F.col("members_total_30d_ago") > 0,
        F.col("members_total") / F.col("members_total_30d_ago") - 1,
    ).cast("double")
    return row.select(
        "*",
        (F.col("rows_received") - F.col("rows_quarantined")).alias("rows_taken_in"),
        _share("members_active_mau", "members_total").alias("mau_share"),
        _share("retention_kept_7d", "retention_base_7d").alias("retention_7d"),
        _share("points_redeemed_365d", "points_earned_365d").alias("points_redemption_rate"),
        (1 - F.col("quarantine_rate")).cast("double").alias("sync_success_rate"),
        _share("crm_records_duplicated", "crm_records").alias("duplicate_rate"),
        _share("members_with_behaviour", "members_total").alias("behaviour_coverage"),
        growth.alias("member_growth_30d"),
        _share("cohort_first_purchase_30d", "registered_cohort_30d").alias(
            "first_purchase_rate_30d"
        ),
        _share("members_tagged", "members_total").alias("tag_coverage"),
    )


def _orders_since(ctx: RunContext, days: int) -> DataFrame:
    """silver/orders of the months that hold [D-(days-1), D] (partition pruning)."""
    first = (ctx.as_of - dt.timedelta(days=days - 1)).strftime("%Y-%m")
    last = ctx.as_of.strftime("%Y-%m")
    return ctx.lake.read("silver/orders").filter(
        (F.col("order_month") >= first) & (F.col("order_month") <= last)
    )


def _events_since(ctx: RunContext, days: int) -> DataFrame:
    """The days in [D-(days-1), D] each web identity had an event on, with today's
    member_id attached: one row per (user_key, anon_key, event_date) of silver/web_events.

    Distinct before the member is attached: a day's many events of one device are one
    row in the joins with the xref (1M members, 14 days: 7.2M events, activity KPIs
    5.4 -> 3.0 s)."""
    events = (
        ctx.lake.read("silver/web_events")
        .filter(
            (F.col("event_date") <= F.lit(ctx.as_of))
            & (F.col("event_date") >= F.lit(ctx.as_of - dt.timedelta(days=days - 1)))
        )
        .select("user_key", "anon_key", "event_date")
        .distinct()
    )
    return attach_member(events, ctx.lake.read("silver/member_xref"), WEB_KEYS)


def _on_d_or_empty(ctx: RunContext, name: str, columns: str) -> DataFrame:
    """D's rows of a gold table, or an empty frame of ``columns`` (DDL) when it is absent."""
    if ctx.lake.exists(name):
        return read_as_of(ctx, name)
    return ctx.spark.createDataFrame([], columns)


def run(ctx: RunContext) -> dict:
    as_of, w = ctx.as_of, load_kpis().windows
    orders = _orders_since(
        ctx,
        max(
            w.pos_member_days,
            w.active_days,
            2 * w.retention_days,
            2 * w.first_purchase_days,
            w.basket_days,
        ),
    )
    features = read_as_of(ctx, "gold/member_features")
    xref = ctx.lake.read("silver/member_xref")
    manifest = ctx.lake.read("meta/ingest_manifest")
    unique = xref_as_written(ctx.lake)
    base = kpis(features, orders, xref, manifest, as_of, w.pos_member_days, unique)
    ledger = (
        ctx.lake.read("silver/points_ledger") if ctx.lake.exists("silver/points_ledger") else None
    )
    parts = [
        activity_kpis(
            features, orders, _events_since(ctx, max(w.active_days, 2 * w.retention_days)), as_of, w
        ),
        first_purchase_kpis(
            features, ctx.lake.read("silver/members"), orders, as_of, w.first_purchase_days
        ),
        member_growth_kpis(features, as_of, w.growth_days),
        basket_kpis(orders, as_of, w.basket_days),
        coverage_kpis(
            features,
            _on_d_or_empty(ctx, "gold/member_tags", "member_id string"),
            _on_d_or_empty(ctx, "gold/member_value", "member_id string, clv_365d double"),
        ),
    ]
    df = seed_kpis(base, parts, points_kpis(ledger, as_of, w.points_days))
    ctx.lake.replace_where(df, "gold/kpi_daily", f"as_of_date = '{ctx.as_of_str}'")
    row = read_as_of(ctx, "gold/kpi_daily").first()
    figures = row.asDict() if row else {}
    figures.pop("as_of_date", None)
    if ledger is None:
        figures["points_note"] = "no silver/points_ledger yet: points_redemption_rate is null"
    return {"rows_out": 1 if row else 0, **figures}
