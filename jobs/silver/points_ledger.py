"""Silver points ledger: one loyalty transaction with the member it belongs to.

Read top to bottom: take the ledger transactions in bronze up to D
(``bronze/loyalty_ledger``: first delivery of each ``txn_id``, conflicts already
quarantined), give each the unified member found through its ``crm_id`` (xref
source ``crm``), else its ``member_card_no`` (xref source ``pos_card``) in
``silver/member_xref``, add the signed effect on the balance, and rewrite
``silver/points_ledger`` whole. A transaction whose member cannot be found is
kept with ``member_id`` null and counted (``unmatched``), never dropped: the
loyalty system may know a member the CRM export has not sent yet.

Rebuilt whole each night from bronze and the current xref, so merged or split
members are re-keyed without any incremental state.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.identity.normalize import norm_card, norm_text_id

BRONZE = "bronze/loyalty_ledger"
XREF = "silver/member_xref"
TABLE = "silver/points_ledger"

# (key column on the ledger rows, xref source), in priority order.
MEMBER_KEYS = (("crm_key", "crm"), ("card_key", "pos_card"))
# Effect of one transaction on the balance (CONTRACT 1.4); ADJUST keeps its own sign.
SIGN = {"EARN": 1, "ADJUST": 1, "REDEEM": -1, "EXPIRE": -1}


def signed_points(txn_type: Column, points: Column) -> Column:
    """``points`` as added to the balance: + EARN/ADJUST, - REDEEM/EXPIRE."""
    sign = F.lit(None).cast("int")
    for name, s in SIGN.items():
        sign = F.when(txn_type == name, F.lit(s)).otherwise(sign)
    return (sign * points).cast("int")


def resolve_members(ledger: DataFrame, xref: DataFrame) -> DataFrame:
    """Ledger rows with ``member_id`` and ``matched_by`` (``crm``, ``pos_card`` or null).

    ``ledger``: one transaction (bronze/loyalty_ledger); ``xref``: one source identity
    (silver/member_xref). Grain unchanged: xref keys are unique per source, and a
    row found by neither key keeps ``member_id`` null.
    """
    keyed = ledger.withColumns(
        {"crm_key": norm_text_id(F.col("crm_id")), "card_key": norm_card(F.col("member_card_no"))}
    )
    found = []
    for column, source in MEMBER_KEYS:
        side = xref.filter((F.col("source") == source) & F.col("member_id").isNotNull()).select(
            F.col("source_key").alias(column), F.col("member_id").alias(f"_{source}_member")
        )
        keyed = keyed.join(side, column, "left")
        found.append((source, F.col(f"_{source}_member")))
    member = F.coalesce(*[c for _, c in found])
    matched_by = F.lit(None).cast("string")
    for source, c in reversed(found):
        matched_by = F.when(c.isNotNull(), F.lit(source)).otherwise(matched_by)
    return keyed.withColumns({"member_id": member, "matched_by": matched_by}).drop(
        *[f"_{source}_member" for _, source in MEMBER_KEYS]
    )


def points_ledger(bronze: DataFrame, xref: DataFrame, as_of: object) -> DataFrame:
    """silver/points_ledger rows (one transaction, key ``txn_id``) from bronze rows dated
    on or before ``as_of`` (their business date) and the identity xref."""
    dated = bronze.filter(F.col("_business_date") <= F.lit(as_of))
    resolved = resolve_members(dated, xref)
    return resolved.select(
        "txn_id",
        "member_id",
        "txn_ts",
        "txn_date",
        "txn_type",
        "points",
        signed_points(F.col("txn_type"), F.col("points")).alias("signed_points"),
        "expire_date",
        "order_id",
        "store_id",
        "reason",
        "matched_by",
        F.col("crm_key").alias("crm_id"),
        F.col("card_key").alias("member_card_no"),
        "_source_file",
        "_business_date",
        F.lit(as_of).cast("date").alias("as_of_date"),
    )


def figures(ledger: DataFrame) -> dict:
    """Rows, rows whose member was not found, rows by match, members below 0 points."""
    by_match = {
        (r.matched_by or "unmatched"): int(r["count"])
        for r in ledger.groupBy("matched_by").count().collect()
    }
    negative = (
        ledger.filter(F.col("member_id").isNotNull())
        .groupBy("member_id")
        .agg(F.sum("signed_points").alias("balance"))
        .filter(F.col("balance") < 0)
        .count()
    )
    rows = sum(by_match.values())
    return {
        "rows_out": rows,
        "unmatched": by_match.get("unmatched", 0),
        "matched_by": by_match,
        "members_negative_balance": negative,
    }


def run(ctx: RunContext) -> dict:
    """Rewrite silver/points_ledger as of D; figures for meta/runs."""
    lake = ctx.lake
    if not lake.exists(BRONZE):
        return {"rows_in": 0, "rows_out": 0, "unmatched": 0, "skipped": "no loyalty ledger"}
    bronze = lake.read(BRONZE)
    rows_in = bronze.filter(F.col("_business_date") <= F.lit(ctx.as_of)).count()
    lake.overwrite(points_ledger(bronze, lake.read(XREF), ctx.as_of), TABLE)
    return {"rows_in": rows_in, **figures(lake.read(TABLE))}
