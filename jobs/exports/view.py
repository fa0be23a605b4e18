"""What segment predicates and the reach rules read: the segment view and contact points.

Both are pure transforms of lake tables for one business date (see their docstrings);
jobs.exports.segments builds them in its ``run`` and re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.columns import sorted_distinct
from jobs.exports.conf import MEMBER_PRIVATE, ReachConf, Segment
from jobs.gold.channels import usable_email, usable_mobile
from jobs.privacy.pii import sha256_col
from jobs.schemas import table_schema


def segment_view(
    features: DataFrame,
    rfm: DataFrame,
    lifecycle: DataFrame,
    tags: DataFrame,
    members: DataFrame,
    channels: DataFrame | None = None,
) -> DataFrame:
    """One row per member of gold/member_features (all for one as_of_date), key member_id.

    Inputs: features, rfm, lifecycle (member x as_of_date, already filtered to D),
    tags (member x tag for D), members (silver/members, one row per member_id),
    channels (gold/member_channels for D; None: its columns are null).
    Adds rfm columns not in features, ``stage``/``lifecycle_stage``, ``tags`` (array,
    empty when none), main_channel/preferred_channel/*_ok and the non-private columns
    of silver/members.
    """
    view = features
    rfm_cols = [c for c in rfm.columns if c not in view.columns]
    view = view.join(rfm.select("member_id", *rfm_cols), "member_id", "left")
    view = view.join(
        lifecycle.select("member_id", F.col("stage"), F.col("stage").alias("lifecycle_stage")),
        "member_id",
        "left",
    )
    tag_arrays = tags.groupBy("member_id").agg(sorted_distinct("tag").alias("tags"))
    view = view.join(tag_arrays, "member_id", "left").withColumn(
        "tags", F.coalesce(F.col("tags"), F.array().cast("array<string>"))
    )
    chan_fields = [
        f for f in table_schema("gold/member_channels").struct.fields if f.name not in view.columns
    ]
    if channels is None:
        for f in chan_fields:
            view = view.withColumn(f.name, F.lit(None).cast(f.dataType))
    else:
        view = view.join(
            channels.select("member_id", *[f.name for f in chan_fields]), "member_id", "left"
        )
    member_cols = [
        c for c in members.columns if c not in view.columns and not MEMBER_PRIVATE.match(c)
    ]
    return view.join(members.select("member_id", *member_cols), "member_id", "left")


# The view's columns an export reads whatever its segments: jobs.exports.segments.candidates.
CANDIDATE_COLUMNS = ("member_id", "stage", "tier", "rfm_segment", "preferred_channel")
_WORD = re.compile(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*)")


def columns_read(view: DataFrame, segments: Iterable[Segment]) -> list[str]:
    """The columns of ``view`` (:func:`segment_view`) an export of ``segments`` reads:
    :data:`CANDIDATE_COLUMNS` and every column a segment's ``where`` names. A column
    counts as named when a word of the predicate (or a back-quoted name) is its name,
    case aside: a word inside a quoted string may keep a column that is not needed,
    never drop one that is.

    At 1M members the whole view (88 columns, six joins) took 5-8 s to write, the
    columns today's segments read 1.3 s."""
    words = {
        (quoted or plain).lower() for seg in segments for quoted, plain in _WORD.findall(seg.where)
    }
    return [c for c in view.columns if c in CANDIDATE_COLUMNS or c.lower() in words]


def contact_points(
    members: DataFrame,
    pii: DataFrame,
    reach: ReachConf,
    phone_deny: list[str],
    email_deny: list[str],
) -> DataFrame:
    """One row per member_id: consent flags, status and the identifiers exports may carry.

    ``members`` is silver/members (consent, masked values), ``pii`` restricted/member_pii
    (canonical 11-digit phone, trimmed lower-case email). Hashes are plain SHA-256 of
    the E.164 phone (``+86`` + 11 digits) and of the lower-cased email, as ad platforms
    expect for customer matching. ``has_mobile`` / ``has_email``: the contact is usable
    (jobs.gold.channels rules: deny-lists of conf/identity.yaml, placeholder domains).
    """
    phone = F.regexp_replace(F.col("p.phone"), r"\D", "")
    e164 = F.when(F.length(phone) == 11, F.concat(F.lit("+86"), phone)).when(
        (F.length(phone) == 13) & phone.startswith("86"), F.concat(F.lit("+"), phone)
    )
    email = F.lower(F.trim(F.col("p.email")))
    return (
        members.alias("m")
        .join(pii.alias("p"), F.col("m.member_id") == F.col("p.member_id"), "left")
        .select(
            F.col("m.member_id").alias("member_id"),
            F.col("m.crm_id").alias("crm_id"),
            F.col("m.status").alias("status"),
            F.coalesce(F.col("m.opt_in_sms"), F.lit(False)).alias("opt_in_sms"),
            F.coalesce(F.col("m.opt_in_email"), F.lit(False)).alias("opt_in_email"),
            F.coalesce(F.col("m.opt_in_push"), F.lit(False)).alias("opt_in_push"),
            F.col("m.phone_masked").alias("phone_masked"),
            F.col("m.email_masked").alias("email_masked"),
            sha256_col(e164).alias("phone_sha256"),
            sha256_col(F.when(F.length(email) > 0, email)).alias("email_sha256"),
            usable_mobile(F.col("p.phone"), phone_deny).alias("has_mobile"),
            usable_email(F.col("p.email"), email_deny, reach.placeholder_email_domains).alias(
                "has_email"
            ),
        )
    )
