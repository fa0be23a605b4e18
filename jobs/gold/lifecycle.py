"""gold/member_lifecycle and gold/lifecycle_transitions from the ordered rules of
conf/lifecycle.yaml (CONTRACT 4: the first rule that holds gives the stage)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.gold.common import previous_as_of, read_as_of, write_as_of
from jobs.gold.conf import LifecycleConf, load_lifecycle
from jobs.gold.value_view import with_value


def stage_expr(conf: LifecycleConf) -> Column:
    """CASE over the rules in order; a null condition counts as not holding."""
    expr = None
    for rule in conf.rules:
        cond = F.coalesce(F.expr(rule.condition()), F.lit(False))
        expr = F.when(cond, rule.stage) if expr is None else expr.when(cond, rule.stage)
    assert expr is not None  # LifecycleConf requires at least one rule
    return expr.otherwise(F.lit(conf.default_stage))


def lifecycle(features: DataFrame, conf: LifecycleConf) -> DataFrame:
    """Stage of every member on D.

    Input: gold/member_features of one as_of_date (grain member x as_of_date), with the
    member's value columns (jobs.gold.value_view) for rules that use them.
    Output grain: one member x as_of_date, keys (member_id, as_of_date).
    """
    return features.select(
        "member_id",
        "as_of_date",
        stage_expr(conf).alias("stage"),
        "recency_days",
        "frequency_365d",
        "first_purchase_date",
        "median_gap_days",
    )


def transitions(
    current: DataFrame, previous: DataFrame, as_of: dt.date, previous_date: dt.date
) -> DataFrame:
    """Members whose stage on D differs from their stage on ``previous_date``.

    Inputs: gold/member_lifecycle of D and of the previous date (one row per member).
    Output grain: one member that changed, keys (member_id, as_of_date); from_stage is
    null for a member new since the previous date, to_stage null for one gone on D.
    """
    cur = current.select("member_id", F.col("stage").alias("to_stage"))
    prev = previous.select("member_id", F.col("stage").alias("from_stage"))
    return (
        cur.join(prev, "member_id", "full_outer")
        .filter(~F.col("from_stage").eqNullSafe(F.col("to_stage")))
        .select(
            "member_id",
            "from_stage",
            "to_stage",
            F.lit(previous_date).alias("previous_as_of_date"),
            F.lit(as_of).alias("as_of_date"),
        )
    )


def run(ctx: RunContext) -> dict:
    conf = load_lifecycle(ctx.spark)
    df = lifecycle(with_value(ctx, read_as_of(ctx, "gold/member_features")), conf)
    write_as_of(ctx, df, "gold/member_lifecycle")
    current = read_as_of(ctx, "gold/member_lifecycle")
    stages = {
        r["stage"]: int(r["n"])
        for r in current.groupBy("stage").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    prev_date = previous_as_of(ctx, "gold/member_lifecycle")
    if prev_date is None:
        # First date of the table: nothing to compare with (a rerun clears old rows too).
        trans = ctx.spark.createDataFrame(
            [],
            "member_id string, from_stage string, to_stage string, previous_as_of_date date, "
            "as_of_date date",
        )
    else:
        previous = ctx.lake.read("gold/member_lifecycle").filter(
            F.col("as_of_date") == F.lit(prev_date)
        )
        trans = transitions(current, previous, ctx.as_of, prev_date)
    write_as_of(ctx, trans, "gold/lifecycle_transitions")
    n_trans = read_as_of(ctx, "gold/lifecycle_transitions").count()
    return {
        "rows_out": sum(stages.values()),
        "stages": stages,
        "previous_as_of_date": prev_date,
        "transitions": n_trans,
    }
