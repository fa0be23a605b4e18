"""The golden record of each member (silver/members) and its raw PII
(restricted/member_pii). Pure transforms.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.identity.graph import latest_crm_versions
from jobs.privacy.pii import hmac_col, mask_email, mask_name, mask_phone


def _latest_non_null(value: Column, order: Column) -> Column:
    """The value of the row with the greatest ``order`` among rows where value is set."""
    return F.max_by(value, F.when(value.isNotNull(), order))


def _first_registration_channel(order: Column) -> Column:
    """The channel of the member's earliest registration that has one; among versions
    with that register_ts, the latest (the same on every engine: every CRM version of a
    record carries the same register_ts, so ordering on it alone left the pick to the
    engine, and Sail and JVM Spark picked differently)."""
    channel = F.col("register_channel")
    key = F.unix_timestamp("register_ts").cast("long") * F.lit(1 << 20) - order
    return F.min_by(channel, F.when(channel.isNotNull(), key))


def golden_records(
    crm: DataFrame,
    xref: DataFrame,
    pos_phones: DataFrame,
    blocked_phone_keys: DataFrame,
    key: bytes,
    as_of: dt.date,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Build the golden record and the restricted PII row of every member.

    Inputs: ``crm`` bronze/crm_members (one row version, dated <= D); ``xref`` this
    run's member_xref (one source identity); ``pos_phones`` one POS order with a valid
    phone (phone, phone_key, order_ts); ``blocked_phone_keys`` one blocked phone (key).
    Outputs (grain: one member_id): the silver/members columns and the
    restricted/member_pii columns. ``materialise`` (as in graph.build_graph) computes the
    shared aggregate once for both outputs.
    """
    members_x = xref.filter(F.col("member_id").isNotNull())
    crm_map = members_x.filter(F.col("source") == "crm").select(
        F.col("source_key").alias("crm_key"), "member_id"
    )
    v = latest_crm_versions(crm).join(crm_map, "crm_key")
    # Ties (two records updated in the same second) resolve the same way every run. The
    # order is a row number, not a struct: Sail 0.7 reserves gigabytes for max_by over a
    # struct (23.8 GB at 20k members, failing in its memory pool).
    w = Window.partitionBy("member_id").orderBy(
        "updated_ts", "_business_date", "_ingested_at", "crm_key", "_line_no"
    )
    v = v.withColumn("rn", F.row_number().over(w).cast("long"))
    order = F.col("rn")
    bkeys = blocked_phone_keys.select(F.col("key").alias("phone_key"), F.lit(True).alias("blk"))
    v = (
        v.withColumn("phone_n", N.norm_phone(F.col("phone")))
        .withColumn("phone_key", hmac_col(F.col("phone_n"), key))
        .join(bkeys, "phone_key", "left")
        .withColumn("phone_ok", F.when(F.col("blk").isNull(), F.col("phone_n")))
        .withColumn("email_n", N.norm_email(F.col("email")))
        # norm_id_card in two steps: the checksum reads a column, not a copy of the
        # cleaning expression per digit (jobs.identity.graph.crm_identifiers).
        .withColumn("id_c", N.clean_id_card(F.col("id_card_no")))
        .withColumn("id_n", F.when(N.id_card_checksum_ok(F.col("id_c")), F.col("id_c")))
        .drop("id_c")
        .withColumn("active", (F.col("status") == "active") & F.col("is_latest"))
    )
    crm_agg = v.groupBy("member_id").agg(
        # The member's main record: an active one first, then the latest updated.
        F.max_by(
            "crm_key",
            F.coalesce(F.col("active"), F.lit(False)).cast("long") * F.lit(1 << 40) + order,
        ).alias("crm_id"),
        F.max(F.col("active").cast("int")).alias("any_active"),
        F.max_by("status", order).alias("latest_status"),
        _latest_non_null(F.col("gender"), order).alias("gender"),
        _latest_non_null(F.col("birth_date"), order).alias("birth_date"),
        _latest_non_null(F.col("province"), order).alias("province"),
        _latest_non_null(F.col("city"), order).alias("city"),
        _latest_non_null(F.col("home_store_id"), order).alias("home_store_id"),
        _latest_non_null(F.col("name"), order).alias("name"),
        F.min("register_ts").alias("register_ts"),
        _first_registration_channel(order).alias("register_channel"),
        # Consent is the latest row's: an empty flag there means no consent.
        F.max_by(F.coalesce("opt_in_sms", F.lit(False)), order).alias("opt_in_sms"),
        F.max_by(F.coalesce("opt_in_email", F.lit(False)), order).alias("opt_in_email"),
        F.max_by(F.coalesce("opt_in_push", F.lit(False)), order).alias("opt_in_push"),
        _latest_non_null(F.col("phone_ok"), order).alias("crm_phone"),
        _latest_non_null(F.col("email_n"), order).alias("email"),
        _latest_non_null(F.col("id_n"), order).alias("id_card_no"),
    )
    # Members known only from the tills still get their latest valid phone.
    phone_map = members_x.filter(F.col("source") == "pos_phone").select(
        F.col("source_key").alias("phone_key"), "member_id"
    )
    pos_phone = (
        pos_phones.join(phone_map, "phone_key")
        .groupBy("member_id")
        .agg(F.max_by("phone", "order_ts").alias("pos_phone"))
    )
    ident = members_x.groupBy("member_id").agg(
        F.count(F.lit(1)).alias("n_source_identities"),
        F.min("first_seen").alias("first_seen"),
        F.max("last_seen").alias("last_seen"),
    )
    g = ident.join(crm_agg, "member_id", "left").join(pos_phone, "member_id", "left")
    g = g.withColumn("phone", F.coalesce("crm_phone", "pos_phone"))
    if materialise is not None:
        g = materialise(g, "golden")  # both outputs below read it
    members = g.select(
        "member_id",
        "crm_id",
        F.col("crm_id").isNotNull().alias("is_registered"),
        F.when(F.col("crm_id").isNull(), F.lit(None).cast("string"))
        .when(F.col("any_active") == 1, F.lit("active"))
        .otherwise(F.col("latest_status"))
        .alias("status"),
        "gender",
        F.year("birth_date").alias("birth_year"),
        F.month("birth_date").alias("birth_month"),
        "province",
        "city",
        "home_store_id",
        "register_ts",
        "register_channel",
        "opt_in_sms",
        "opt_in_email",
        "opt_in_push",
        hmac_col(F.col("phone"), key).alias("phone_hash"),
        mask_phone(F.col("phone")).alias("phone_masked"),
        hmac_col(F.col("email"), key).alias("email_hash"),
        mask_email(F.col("email")).alias("email_masked"),
        mask_name(F.col("name")).alias("name_masked"),
        "n_source_identities",
        "first_seen",
        "last_seen",
        F.lit(as_of).alias("as_of_date"),
    )
    pii = g.select(
        "member_id",
        "name",
        "phone",
        "email",
        "id_card_no",
        "birth_date",
        F.lit(as_of).alias("as_of_date"),
    )
    return members, pii
