"""gold/member_tags and gold/member_tag_changes from the rules of conf/tags.yaml.

Every rule is evaluated in one pass over the tag input: each row builds the array
of the tags it earns (a null per rule that does not hold, filtered out), and the
array is exploded. Adding a rule adds an array element, not a scan.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.gold.common import previous_as_of, read_as_of, write_as_of
from jobs.gold.conf import TagRule, TagsConf, load_tags
from jobs.gold.points import with_points
from jobs.gold.value_view import with_value

RFM_COLUMNS = ("r_score", "f_score", "m_score", "fm_score", "rfm_segment")


def tag_input(features: DataFrame, rfm: DataFrame) -> DataFrame:
    """member_features plus the member's RFM scores (null for members without purchases).

    Inputs: gold/member_features and gold/member_rfm of one as_of_date.
    Output grain: one member (keys member_id, as_of_date), as member_features.
    """
    return features.join(rfm.select("member_id", *RFM_COLUMNS), on="member_id", how="left")


def _tag_value(rule: TagRule) -> Column:
    """The tag text of ``rule`` for a row: the name with its placeholders filled in."""
    parts: list[Column] = []
    for literal, column in rule.literal_parts:
        if literal:
            parts.append(F.lit(literal))
        if column:
            parts.append(F.col(column).cast("string"))
    # concat is null when any placeholder is null: such a row gets no tag from the rule.
    return parts[0] if len(parts) == 1 else F.concat(*parts)


def tags(tag_in: DataFrame, conf: TagsConf) -> DataFrame:
    """Tags held on D.

    Input: the tag input (see :func:`tag_input`), one row per member of one as_of_date.
    Output grain: one tag held by one member, keys (member_id, tag, as_of_date).
    """
    cells = [
        F.when(
            F.coalesce(F.expr(rule.when), F.lit(False)),
            F.struct(_tag_value(rule).alias("tag"), F.lit(position).alias("rule_pos")),
        )
        for position, rule in enumerate(conf.tags)
    ]
    if not cells:
        return tag_in.select(
            "member_id",
            F.lit(None).cast("string").alias("tag"),
            F.lit(None).cast("string").alias("rule"),
            "as_of_date",
        ).limit(0)
    earned = F.filter(F.array(*cells), lambda t: t.isNotNull() & t["tag"].isNotNull())
    # Two rules giving a member the same tag: the first in conf/tags.yaml names it. A min
    # of the rule's position, not dropDuplicates (a first() per column on Sail 0.7.2,
    # about 10x a min, and an arbitrary rule).
    names = F.array(*[F.lit(rule.name) for rule in conf.tags])
    return (
        tag_in.select("member_id", "as_of_date", F.explode(earned).alias("t"))
        .groupBy("member_id", F.col("t.tag").alias("tag"), "as_of_date")
        .agg(F.min("t.rule_pos").alias("rule_pos"))
        .select("member_id", "tag", F.element_at(names, F.col("rule_pos") + 1).alias("rule"), "as_of_date")
    )


def tag_changes(
    current: DataFrame, previous: DataFrame, as_of: dt.date, previous_date: dt.date
) -> DataFrame:
    """Tags entered and exited between ``previous_date`` and D.

    Inputs: gold/member_tags rows of D and of the previous date (member x tag).
    Output grain: one (member_id, tag) that changed, keys (member_id, tag, as_of_date).
    """
    cur = current.select("member_id", "tag", F.lit(True).alias("_now"))
    prev = previous.select("member_id", "tag", F.lit(True).alias("_before"))
    j = cur.join(prev, ["member_id", "tag"], "full_outer")
    return j.filter(F.col("_now").isNull() | F.col("_before").isNull()).select(
        "member_id",
        "tag",
        F.when(F.col("_now").isNotNull(), F.lit("entered"))
        .otherwise(F.lit("exited"))
        .alias("change"),
        F.lit(previous_date).alias("previous_as_of_date"),
        F.lit(as_of).alias("as_of_date"),
    )


def run(ctx: RunContext) -> dict:
    conf = load_tags(ctx.spark)
    tag_in = tag_input(read_as_of(ctx, "gold/member_features"), read_as_of(ctx, "gold/member_rfm"))
    tag_in = with_value(ctx, tag_in)  # p_alive, churn_risk, clv_365d, clv_band, ...
    tag_in = with_points(ctx, tag_in)  # balance, expiring_30d, days_since_redemption, ...
    df = tags(tag_in, conf)
    write_as_of(ctx, df, "gold/member_tags")
    current = read_as_of(ctx, "gold/member_tags")
    by_tag = {
        r["rule"]: int(r["n"])
        for r in current.groupBy("rule").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    prev_date = previous_as_of(ctx, "gold/member_tags")
    figures: dict = {"rows_out": sum(by_tag.values()), "by_rule": by_tag}
    if prev_date is None:
        # Nothing to compare with: an empty change set for D (a rerun clears old rows too).
        changes = ctx.spark.createDataFrame(
            [],
            "member_id string, tag string, change string, previous_as_of_date date, "
            "as_of_date date",
        )
    else:
        previous = ctx.lake.read("gold/member_tags").filter(F.col("as_of_date") == F.lit(prev_date))
        changes = tag_changes(current, previous, ctx.as_of, prev_date)
    write_as_of(ctx, changes, "gold/member_tag_changes")
    ch = {
        r["change"]: int(r["n"])
        for r in read_as_of(ctx, "gold/member_tag_changes")
        .groupBy("change")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    figures.update(
        previous_as_of_date=prev_date, entered=ch.get("entered", 0), exited=ch.get("exited", 0)
    )
    return figures
