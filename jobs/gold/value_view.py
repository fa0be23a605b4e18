"""The member-value columns that tag, lifecycle and segment predicates can use.

Kept apart from jobs/gold/value.py (which imports numpy/scipy) so that loading and
checking the rule files stays light.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.context import RunContext
from jobs.gold.common import read_as_of
from jobs.schemas import table_schema

# Columns of gold/member_value joined into the rows predicates run on.
PREDICATE_COLUMNS = (
    "p_alive",
    "churn_risk",
    "clv_365d",
    "clv_band",
    "expected_purchases_365d",
    "expected_order_value",
)


def value_fields() -> list[T.StructField]:
    """Schema fields of :data:`PREDICATE_COLUMNS` (for validating predicates)."""
    fields = {f.name: f for f in table_schema("gold/member_value").struct.fields}
    return [fields[c] for c in PREDICATE_COLUMNS]


def with_value(ctx: RunContext, frame: DataFrame) -> DataFrame:
    """``frame`` (one row per member_id, grain unchanged) plus :data:`PREDICATE_COLUMNS` of D.

    Members without a purchase get nulls; so does everyone on a lake where the value
    step has not run yet (no gold/member_value).
    """
    if ctx.lake.exists("gold/member_value"):
        value = read_as_of(ctx, "gold/member_value").select("member_id", *PREDICATE_COLUMNS)
        return frame.join(value, "member_id", "left")
    return frame.select("*", *[F.lit(None).cast(f.dataType).alias(f.name) for f in value_fields()])
