"""The identity graph: source identities, the edges between them and the junk values
that must link nothing. Pure transforms (DataFrames in, DataFrames out).

Nodes are ``(source, key)``. Source identities are ``crm`` (crm_id), ``web_user``
(user_id), ``web_anon`` (anonymous_id), ``pos_card`` (card, trimmed + upper) and
``pos_phone`` (HMAC of the canonical phone: raw phones never leave bronze). Two
more node kinds only connect: ``email`` and ``id_card`` (HMAC of the normalised
value), so CRM records sharing an e-mail or ID card end up together without an
edge per pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F

from jobs.columns import sorted_distinct
from jobs.identity import normalize as N
from jobs.identity.components import (
    LinkProfile,
    connected_components,
    refuse_merges,
)
from jobs.identity.conf import IdentityConf
from jobs.identity.corroborate import (
    conflicting_values,
    corroborated_edges,
    crm_profiles,
    group_units,
    junk_candidate_pairs,
    never_link,
    pairs_within,
    second_pass_junk_pairs,
)
from jobs.identity.fuzzy import compared_pairs, labelled_pairs, rule_edges
from jobs.identity.lone import LONE_RULE, lone_edges
from jobs.identity.scored import scored_pairs
from jobs.privacy.pii import hmac_col, mask_email, mask_id_card, mask_phone

# CRM identifier type -> the node source it points at.
NODE_SOURCE = {
    "phone": "pos_phone",
    "email": "email",
    "id_card": "id_card",
    "card": "pos_card",
    "web_user": "web_user",
}
IDENTITY_SOURCES = ("crm", "web_user", "web_anon", "pos_card", "pos_phone")
# Clusters holding one of these (not blocked) become members; a lone device does not.
MEMBER_SOURCES = ("crm", "web_user", "pos_card", "pos_phone")

EDGE_COLUMNS = [
    "src_source",
    "src_key",
    "dst_source",
    "dst_key",
    "rule",
    "confidence",
    "first_seen",
    "last_seen",
]


@dataclass
class Graph:
    identities: DataFrame  # one source identity: source, key, first_seen, last_seen, blocked
    edges: DataFrame  # one kept edge: EDGE_COLUMNS
    blocked: DataFrame  # one blocked value: id_type, value_hash, value_masked, counts, reason
    superseded: DataFrame  # one dropped CRM edge (value moved to another record)
    refused: DataFrame  # one edge refused: never-link pair or cluster cap (refused_cap)
    refused_cap: DataFrame  # one fuzzy edge refused: cluster above fuzzy.max_cluster_records


def latest_crm_versions(crm: DataFrame) -> DataFrame:
    """Flag each CRM row version that is its record's latest.

    Input grain: one CRM row version (bronze/crm_members). Output: the same rows with
    ``crm_key`` (trimmed crm_id) and ``is_latest``; ties on updated_ts go to the later
    delivery.
    """
    if {"crm_key", "is_latest"} <= set(crm.columns):
        return crm  # already flagged (and materialised once by the job)
    w = Window.partitionBy("crm_key").orderBy(
        F.col("updated_ts").desc_nulls_last(),
        F.col("_business_date").desc_nulls_last(),
        F.col("_ingested_at").desc_nulls_last(),
        F.col("_source_file").desc_nulls_last(),
        F.col("_line_no").desc_nulls_last(),
    )
    keyed = crm.withColumn("crm_key", N.norm_text_id(F.col("crm_id"))).filter(
        F.col("crm_key").isNotNull()
    )
    # Most records have one version: only the others are ranked. The window sorts whole
    # rows; at 1M members (1.09M versions) ranking all took 4.3 s, counting the versions
    # per record and ranking the few with several 2.2 s (a copy of the rows: 1.1 s).
    several = (
        keyed.groupBy("crm_key")
        .agg(F.count(F.lit(1)).alias("_versions"))
        .filter(F.col("_versions") > 1)
        .select("crm_key")
    )
    one = keyed.join(several, "crm_key", "left_anti").withColumn("is_latest", F.lit(True))
    ranked = keyed.join(several, "crm_key", "left_semi").withColumn(
        "is_latest", F.row_number().over(w) == 1
    )
    return one.unionByName(ranked)


def crm_identifiers(crm: DataFrame, key: bytes) -> DataFrame:
    """Every identifier on every CRM row version, in long form.

    Input grain: one CRM row version. Output grain: one (row version, identifier type)
    with a value; columns crm_id, id_type, value (normalised, raw PII: never written
    outside restricted/), key (node key: HMAC for phone/email/ID card), valid, is_latest,
    seen (business date of the version).
    """
    v = latest_crm_versions(crm).select(
        F.col("crm_key").alias("crm_id"),
        "is_latest",
        F.col("_business_date").alias("seen"),
        "phone",
        "email",
        "id_card_no",
        "member_card_no",
        "web_user_id",
    )
    # The cleaned ID card as a column: the checksum reads it once per digit, and an
    # expression in its place would be copied 18 times into the plan (23 KB, not 1.4).
    v = v.withColumn("id_clean", N.clean_id_card(F.col("id_card_no")))
    id_clean = F.col("id_clean")
    parts = [
        ("phone", N.norm_phone(F.col("phone")), F.lit(True), True),
        ("email", N.norm_email(F.col("email")), F.lit(True), True),
        ("id_card", id_clean, F.coalesce(N.id_card_checksum_ok(id_clean), F.lit(False)), True),
        ("card", N.norm_card(F.col("member_card_no")), F.lit(True), False),
        ("web_user", N.norm_text_id(F.col("web_user_id")), F.lit(True), False),
    ]
    out = None
    for id_type, value, valid, hashed in parts:
        df = v.select(
            "crm_id",
            "is_latest",
            "seen",
            F.lit(id_type).alias("id_type"),
            value.alias("value"),
            valid.alias("valid"),
        ).filter(F.col("value").isNotNull())
        df = df.withColumn("key", hmac_col(F.col("value"), key) if hashed else F.col("value"))
        out = df if out is None else out.unionByName(df)
    assert out is not None
    return out


def pos_order_parts(pos: DataFrame, key: bytes) -> DataFrame:
    """POS identifiers at (business date, order) grain: one business date's contribution,
    kept as state so a night reads only the new bronze days.

    Input grain: one POS line (bronze/pos_lines). Output grain: one (_business_date,
    order_id); columns order_id, order_date, order_ts (first), card (src_key), phone_key
    (dst_key), phone (canonical, raw). The card and phone sit in edge-shaped columns
    (src_source/src_key/dst_source/dst_key) so `cdp forget` finds and erases them.
    """
    o = pos.groupBy("_business_date", "order_id").agg(
        F.min("order_date").alias("order_date"),
        F.min("order_ts").alias("order_ts"),
        F.max(N.norm_card(F.col("member_card_no"))).alias("card"),
        F.max(N.norm_phone(F.col("phone"))).alias("phone"),
    )
    return o.select(
        "_business_date",
        "order_id",
        "order_date",
        "order_ts",
        F.lit("pos_card").alias("src_source"),
        F.col("card").alias("src_key"),
        F.lit("pos_phone").alias("dst_source"),
        hmac_col(F.col("phone"), key).alias("dst_key"),
        "phone",
    )


def orders_from_parts(parts: DataFrame, key: bytes) -> DataFrame:
    """POS identifiers at order grain from the per-date parts (an order may span dates).

    Output grain: one order_id; columns order_id, order_date, order_ts, card, phone (raw,
    canonical), phone_key (HMAC). An order's card/phone are the same on every line; the
    max tolerates a stray blank.
    """
    o = parts.groupBy("order_id").agg(
        F.min("order_date").alias("order_date"),
        F.min("order_ts").alias("order_ts"),
        F.max("src_key").alias("card"),
        F.max("phone").alias("phone"),
        F.max("dst_key").alias("any_key"),
        F.min("dst_key").alias("min_key"),
    )
    # Nearly every order has one phone: its key is then known without hashing again.
    return o.select(
        "order_id",
        "order_date",
        "order_ts",
        "card",
        "phone",
        F.when(F.col("any_key") == F.col("min_key"), F.col("any_key"))
        .otherwise(hmac_col(F.col("phone"), key))
        .alias("phone_key"),
    )


def pos_orders(pos: DataFrame, key: bytes) -> DataFrame:
    """POS identifiers at order grain straight from bronze (see :func:`orders_from_parts`)."""
    return orders_from_parts(pos_order_parts(pos, key), key)


def web_link_parts(web: DataFrame, conf: IdentityConf) -> DataFrame:
    """Device-account pairs from login/signup events, per business date.

    Input grain: one web event. Output grain: one (_business_date, anonymous_id,
    user_id): src_source web_anon, src_key, dst_source web_user, dst_key, first_seen,
    last_seen (event dates).
    """
    return (
        web.filter(F.col("event_type").isin(*conf.web.link_event_types))
        .select(
            "_business_date",
            N.norm_text_id(F.col("anonymous_id")).alias("anon"),
            N.norm_text_id(F.col("user_id")).alias("user"),
            F.col("event_date").alias("d"),
        )
        .filter(F.col("anon").isNotNull() & F.col("user").isNotNull())
        .groupBy("_business_date", "anon", "user")
        .agg(F.min("d").alias("first_seen"), F.max("d").alias("last_seen"))
        .select(
            "_business_date",
            F.lit("web_anon").alias("src_source"),
            F.col("anon").alias("src_key"),
            F.lit("web_user").alias("dst_source"),
            F.col("user").alias("dst_key"),
            "first_seen",
            "last_seen",
        )
    )


def links_from_parts(parts: DataFrame) -> DataFrame:
    """Output grain: one (anon, user) with the first and last date seen together."""
    return parts.groupBy(F.col("src_key").alias("anon"), F.col("dst_key").alias("user")).agg(
        F.min("first_seen").alias("first_seen"), F.max("last_seen").alias("last_seen")
    )


def web_identity_parts(web: DataFrame) -> DataFrame:
    """Web accounts and devices seen per business date.

    Input grain: one web event. Output grain: one (_business_date, source, source_key)
    with source web_user or web_anon, first_seen, last_seen (event dates).
    """
    ids = web.select(
        "_business_date",
        F.lit("web_user").alias("source"),
        N.norm_text_id(F.col("user_id")).alias("source_key"),
        F.col("event_date").alias("d"),
    ).unionByName(
        web.select(
            "_business_date",
            F.lit("web_anon").alias("source"),
            N.norm_text_id(F.col("anonymous_id")).alias("source_key"),
            F.col("event_date").alias("d"),
        )
    )
    return (
        ids.filter(F.col("source_key").isNotNull())
        .groupBy("_business_date", "source", "source_key")
        .agg(F.min("d").alias("first_seen"), F.max("d").alias("last_seen"))
    )


def web_ids_from_parts(parts: DataFrame) -> DataFrame:
    """Output grain: one (source, key) with first_seen, last_seen."""
    return parts.groupBy("source", F.col("source_key").alias("key")).agg(
        F.min("first_seen").alias("first_seen"), F.max("last_seen").alias("last_seen")
    )


def source_identities(
    crm_ids: DataFrame, crm: DataFrame, orders: DataFrame, web_ids: DataFrame
) -> DataFrame:
    """Every source identity with the dates it was first and last seen.

    ``web_ids``: one (source, key) of the web with first_seen/last_seen
    (:func:`web_ids_from_parts`). Output grain: one (source, key).
    """
    crm_rows = latest_crm_versions(crm).select(
        F.lit("crm").alias("source"),
        F.col("crm_key").alias("key"),
        F.col("_business_date").alias("d"),
    )
    from_crm = crm_ids.filter(
        F.col("id_type").isin("phone", "card", "web_user") & F.col("valid")
    ).select(
        F.when(F.col("id_type") == "phone", "pos_phone")
        .when(F.col("id_type") == "card", "pos_card")
        .otherwise("web_user")
        .alias("source"),
        "key",
        F.col("seen").alias("d"),
    )
    pos_card = orders.select(
        F.lit("pos_card").alias("source"),
        F.col("card").alias("key"),
        F.col("order_date").alias("d"),
    )
    pos_phone = orders.select(
        F.lit("pos_phone").alias("source"),
        F.col("phone_key").alias("key"),
        F.col("order_date").alias("d"),
    )
    all_ids = crm_rows
    for df in (from_crm, pos_card, pos_phone):
        all_ids = all_ids.unionByName(df)
    dated = all_ids.select(
        "source", "key", F.col("d").alias("first_seen"), F.col("d").alias("last_seen")
    )
    return (
        dated.unionByName(web_ids.select("source", "key", "first_seen", "last_seen"))
        .filter(F.col("key").isNotNull())
        .groupBy("source", "key")
        .agg(F.min("first_seen").alias("first_seen"), F.max("last_seen").alias("last_seen"))
    )


def _mask(id_type: Column, value: Column) -> Column:
    card_mask = F.concat(F.substring(value, 1, 2), F.lit("***"), F.substring(value, -2, 2))
    return (
        F.when(id_type == "phone", mask_phone(value))
        .when(id_type == "email", mask_email(value))
        .when(id_type == "id_card", mask_id_card(value))
        .when(id_type == "card", card_mask)
    )


def deny_list_keys(spark: SparkSession, conf: IdentityConf, key: bytes) -> DataFrame:
    """The configured deny-list as (id_type, key), normalised exactly like the data."""
    d = conf.junk.deny_list
    rows = [(t, v) for t, vals in (("phone", d.phone), ("email", d.email),
            ("id_card", d.id_card), ("card", d.card)) for v in vals]  # fmt: skip
    df = spark.createDataFrame(rows, "id_type string, raw string")
    t = F.col("id_type")
    value = (
        F.when(t == "phone", N.norm_phone(F.col("raw")))
        .when(t == "email", N.norm_email(F.col("raw")))
        .when(t == "id_card", N.clean_id_card(F.col("raw")))
        .otherwise(N.norm_card(F.col("raw")))
    )
    df = df.withColumn("value", value).filter(F.col("value").isNotNull())
    hashed = F.when(t == "card", F.col("value")).otherwise(hmac_col(F.col("value"), key))
    return df.select("id_type", hashed.alias("key"), "value").distinct()


def _raw_edges(crm_ids: DataFrame, orders: DataFrame, links: DataFrame) -> DataFrame:
    """Every candidate edge before blocking (grain: one edge x rule)."""
    node_source = F.lit(None).cast("string")
    for id_type, src in NODE_SOURCE.items():
        node_source = F.when(F.col("id_type") == id_type, src).otherwise(node_source)
    crm_e = (
        crm_ids.filter(F.col("valid"))
        .groupBy("crm_id", "id_type", "key")
        .agg(
            F.min("seen").alias("first_seen"),
            F.max("seen").alias("last_seen"),
            F.max(F.col("is_latest").cast("int")).alias("on_latest"),
        )
        .select(
            F.lit("crm").alias("src_source"),
            F.col("crm_id").alias("src_key"),
            node_source.alias("dst_source"),
            F.col("key").alias("dst_key"),
            F.concat(F.lit("crm_"), F.col("id_type")).alias("rule"),
            F.lit("high").alias("confidence"),
            "first_seen",
            "last_seen",
            (F.col("on_latest") == 1).alias("on_latest"),
        )
    )
    pos_e = (
        orders.filter(F.col("card").isNotNull() & F.col("phone_key").isNotNull())
        .groupBy("card", "phone_key")
        .agg(F.min("order_date").alias("first_seen"), F.max("order_date").alias("last_seen"))
        .select(
            F.lit("pos_card").alias("src_source"),
            F.col("card").alias("src_key"),
            F.lit("pos_phone").alias("dst_source"),
            F.col("phone_key").alias("dst_key"),
            F.lit("pos_card_phone").alias("rule"),
            F.lit("high").alias("confidence"),
            "first_seen",
            "last_seen",
            F.lit(True).alias("on_latest"),
        )
    )
    web_e = links.select(
        F.lit("web_anon").alias("src_source"),
        F.col("anon").alias("src_key"),
        F.lit("web_user").alias("dst_source"),
        F.col("user").alias("dst_key"),
        F.lit("web_login").alias("rule"),
        F.lit("high").alias("confidence"),
        "first_seen",
        "last_seen",
        F.lit(True).alias("on_latest"),
    )
    return crm_e.unionByName(pos_e).unionByName(web_e)


def blocked_values(
    spark: SparkSession,
    crm_ids: DataFrame,
    orders: DataFrame,
    raw_edges: DataFrame,
    conf: IdentityConf,
    key: bytes,
    extra_reasons: DataFrame | None = None,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Identifier values that link nothing, with why.

    ``extra_reasons``: more (id_type, key, value, reason) rows, e.g. never-link conflicts.
    ``materialise``: as in :func:`build_graph`; the (few) values found are then written
    once, and only their own records and edges are counted (not every value's).

    Output grain: one (id_type, key); columns value (normalised raw, for the mask),
    n_crm_records, n_source_identities (distinct neighbours before blocking), reason
    (comma-separated when several hold).
    """
    j = conf.junk
    # Per record first (a record's versions repeat its values), then per value: a count,
    # not a distinct count (1M members, 3.9M identifiers: 1.96-2.21 s against 2.27-2.87 s).
    crm_counts = (
        crm_ids.groupBy("id_type", "key", "crm_id")
        .agg(F.max("value").alias("value"), F.min(F.col("valid").cast("int")).alias("valid"))
        .groupBy("id_type", "key")
        .agg(
            F.count(F.lit(1)).alias("n_crm_records"),
            F.max("value").alias("value"),
            F.min("valid").alias("valid"),
        )
    )
    # Both reasons from one read of the counts (each read groups every identifier).
    crm_reason = F.when(
        (F.col("valid") == 1) & (F.col("n_crm_records") > j.max_crm_records_per_value),
        F.lit("shared_by_many"),
    ).when(F.col("valid") == 0, F.lit("invalid_checksum"))
    shared_or_invalid = crm_counts.select(
        "id_type", "key", "value", crm_reason.alias("reason")
    ).filter(F.col("reason").isNotNull())
    denied = deny_list_keys(spark, conf, key)
    # The deny-listed values the data holds (the list is short: broadcast, so the
    # identifiers are only streamed past it).
    present = (
        crm_ids.select("id_type", "key")
        .unionByName(
            orders.select(F.lit("phone").alias("id_type"), F.col("phone_key").alias("key"))
        )
        .unionByName(orders.select(F.lit("card").alias("id_type"), F.col("card").alias("key")))
        .join(F.broadcast(denied.select("id_type", "key")), ["id_type", "key"], "left_semi")
        .distinct()
    )
    # Only deny-listed values the data holds are worth a row.
    deny = denied.join(present, ["id_type", "key"], "left_semi").select(
        "id_type", "key", "value", F.lit("deny_list").alias("reason")
    )
    phones = orders.filter(F.col("phone_key").isNotNull())
    per_day = phones.groupBy("phone_key", "order_date").agg(
        F.countDistinct("order_id").alias("n_orders")
    )
    phone_stats = (
        phones.groupBy("phone_key")
        .agg(F.countDistinct("card").alias("n_cards"), F.max("phone").alias("value"))
        .join(per_day.groupBy("phone_key").agg(F.max("n_orders").alias("max_day")), "phone_key")
    )
    # Both phone reasons from one read of the stats (a phone may have both).
    phone_reasons = F.array(
        F.when(F.col("n_cards") > j.max_cards_per_phone, F.lit("many_cards")),
        F.when(F.col("max_day") > j.max_phone_orders_per_day, F.lit("many_orders_per_day")),
    )
    busy = phone_stats.select(
        F.lit("phone").alias("id_type"),
        F.col("phone_key").alias("key"),
        "value",
        F.explode(phone_reasons).alias("reason"),
    ).filter(F.col("reason").isNotNull())
    reasons = shared_or_invalid.unionByName(deny).unionByName(busy)
    if extra_reasons is not None:
        reasons = reasons.unionByName(extra_reasons.select("id_type", "key", "value", "reason"))
    type_of_source = F.lit(None).cast("string")
    for id_type, src in NODE_SOURCE.items():
        type_of_source = F.when(F.col("s") == src, id_type).otherwise(type_of_source)
    ends = raw_edges.select(
        F.col("src_source").alias("s"), F.col("src_key").alias("k"), F.col("dst_source").alias("o_s"),
        F.col("dst_key").alias("o_k"),
    ).unionByName(
        raw_edges.select(
            F.col("dst_source").alias("s"), F.col("dst_key").alias("k"),
            F.col("src_source").alias("o_s"), F.col("src_key").alias("o_k"),
        )
    )  # fmt: skip
    found = reasons.groupBy("id_type", "key").agg(
        F.max("value").alias("value"),
        F.concat_ws(",", sorted_distinct("reason")).alias("reason"),
    )
    if materialise is not None:
        found = materialise(found, "blocked_found")
    # The counts of the values found only: at 1M members the edges' ends are millions of
    # rows and the values found a few hundred (broadcast; each read of ``found`` is cheap
    # once written).
    wanted = found.select("id_type", "key")
    if materialise is not None:
        wanted = F.broadcast(wanted)
    n_crm = (
        crm_ids.join(wanted, ["id_type", "key"], "left_semi")
        .groupBy("id_type", "key")
        .agg(F.countDistinct("crm_id").alias("n_crm_records"))
    )
    # distinct + count, not countDistinct over two columns: Sail 0.7 reserves gigabytes
    # for a multi-column distinct aggregate (7.5 GB at 20k members; fails in its pool).
    degree = (
        ends.withColumn("id_type", type_of_source)
        .filter(F.col("id_type").isNotNull() & F.col("o_s").isNotNull() & F.col("o_k").isNotNull())
        .select("id_type", F.col("k").alias("key"), "o_s", "o_k")
        .join(wanted, ["id_type", "key"], "left_semi")
        .distinct()
        .groupBy("id_type", "key")
        .agg(F.count(F.lit(1)).alias("n_source_identities"))
    )
    return (
        found.join(n_crm, ["id_type", "key"], "left")
        .join(degree, ["id_type", "key"], "left")
        .select(
            "id_type",
            "key",
            "value",
            F.coalesce("n_crm_records", F.lit(0)).cast("long").alias("n_crm_records"),
            F.coalesce("n_source_identities", F.lit(0)).cast("long").alias("n_source_identities"),
            "reason",
        )
    )


def _superseded(crm_edges: DataFrame) -> DataFrame:
    """CRM edges whose value left this record and now sits on another record's latest
    version: a correction (or a recycled number), not an old value of the same person.

    Input/output grain: one CRM edge (crm record -> value node).
    """
    claims = crm_edges.filter(F.col("on_latest")).select("dst_source", "dst_key").distinct()
    return crm_edges.filter(~F.col("on_latest")).join(
        claims, ["dst_source", "dst_key"], "left_semi"
    )


def shared_value_pairs(kept_edges: DataFrame) -> DataFrame:
    """Pairs of CRM records already sharing a value node (grain: one (x, y), x < y)."""
    ce = kept_edges.filter(F.col("src_source") == "crm").select(
        F.col("src_key").alias("c"), "dst_source", "dst_key"
    )
    return (
        ce.alias("p")
        .join(ce.alias("q"), ["dst_source", "dst_key"])
        .filter(F.col("p.c") < F.col("q.c"))
        .select(F.col("p.c").alias("x"), F.col("q.c").alias("y"))
        .distinct()
    )


def name_dob_city_keys(crm: DataFrame) -> DataFrame:
    """The name + birth date + city key of each record's latest version, for records
    holding all three. Input: CRM row versions. Output grain: one crm_id; seen, nk."""
    latest = latest_crm_versions(crm).filter(F.col("is_latest"))
    return latest.select(
        F.col("crm_key").alias("crm_id"),
        F.col("_business_date").alias("seen"),
        F.concat_ws(
            "|", N.norm_name(F.col("name")), F.col("birth_date").cast("string"),
            N.norm_city(F.col("city")),
        ).alias("nk"),
        (N.norm_name(F.col("name")).isNotNull() & F.col("birth_date").isNotNull()
         & N.norm_city(F.col("city")).isNotNull()).alias("ok"),
    ).filter(F.col("ok")).drop("ok")  # fmt: skip


def name_dob_city_edges(
    crm: DataFrame,
    kept_crm_edges: DataFrame,
    conf: IdentityConf,
    profiles: DataFrame | None = None,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Second pass: CRM records sharing no identifier but the same normalised name, birth
    date and city (latest version of each), in groups no larger than the configured size
    (rule ``name_dob_city``) or, with ``second_pass.linked`` on, larger groups of at most
    ``linked.max_records`` records that are no more than that many people once the
    records already linked to each other count as one (rule ``name_dob_city_linked``: one
    person registered many times, plus a record or two without identifiers).
    With ``profiles`` (:func:`jobs.identity.corroborate.crm_profiles`), pairs the
    never-link rules keep apart get no edge.

    ``kept_crm_edges``: the first pass's kept edges. ``materialise`` (as in
    :func:`build_graph`) writes the records' keys once: they are read by the group sizes,
    the pairs and the linked groups, and inlined they were made again for each (at 1M
    members, the edges of every record: 12.7 s, 3.8 s with the keys written once).
    Output grain: one edge between two CRM records, confidence from the conf
    (``name_dob_city``: medium).
    """
    keyed = name_dob_city_keys(crm)
    if materialise is not None:
        keyed = materialise(keyed, "ndc_keys")
    sp = conf.second_pass
    sizes = keyed.groupBy("nk").agg(F.count(F.lit(1)).alias("n"))
    rule = F.when(F.col("n") <= sp.max_group_size, F.lit("name_dob_city"))
    confidence = F.when(F.col("n") <= sp.max_group_size, F.lit("medium"))
    shared = shared_value_pairs(kept_crm_edges)
    if sp.linked.enabled:
        big = sizes.filter(
            (F.col("n") > sp.max_group_size) & (F.col("n") <= sp.linked.max_records)
        ).select("nk")
        members = keyed.join(big, "nk").select("nk", "crm_id")
        # The edges of those groups' records only: a few, however large the lake.
        own = kept_crm_edges.filter(F.col("src_source") == "crm").join(
            members.select(F.col("crm_id").alias("src_key")), "src_key", "left_semi"
        )
        links = shared_value_pairs(own).unionByName(
            own.filter(F.col("dst_source") == "crm").select(
                F.col("src_key").alias("x"), F.col("dst_key").alias("y")
            )
        )
        units = group_units(members, links)
        sizes = sizes.join(units, "nk", "left")
        few = F.coalesce(F.col("units") <= sp.max_group_size, F.lit(False))
        rule = rule.when(few, F.lit("name_dob_city_linked"))
        confidence = confidence.when(few, F.lit(sp.linked.confidence))
    labelled = sizes.select("nk", rule.alias("rule"), confidence.alias("confidence"))
    grp = keyed.join(labelled.filter(F.col("rule").isNotNull()), "nk")
    pairs = pairs_within(grp, ["nk"]).select(
        F.col("a.crm_id").alias("x"),
        F.col("b.crm_id").alias("y"),
        F.greatest("a.seen", "b.seen").alias("seen"),
        F.col("a.rule").alias("rule"),
        F.col("a.confidence").alias("confidence"),
    )
    if profiles is not None:
        # One read of the pairs: a record without a profile has nothing to veto with.
        pa, pb = profiles.alias("pa"), profiles.alias("pb")
        pairs = (
            pairs.join(pa, F.col("pa.crm_id") == F.col("x"), "left")
            .join(pb, F.col("pb.crm_id") == F.col("y"), "left")
            .filter(~never_link(conf, "pa", "pb"))
            .select("x", "y", "seen", "rule", "confidence")
        )
    # Pairs already sharing a value node need no second-pass edge.
    return pairs.join(shared, ["x", "y"], "left_anti").select(
        F.lit("crm").alias("src_source"),
        F.col("x").alias("src_key"),
        F.lit("crm").alias("dst_source"),
        F.col("y").alias("dst_key"),
        "rule",
        "confidence",
        F.col("seen").alias("first_seen"),
        F.col("seen").alias("last_seen"),
    )


def node_id(source: Column, key: Column) -> Column:
    return F.xxhash64(F.concat(source, F.lit(":"), key))


# Second-pass rules besides fuzzy_*: under the fuzzy cluster cap (max_cluster_records).
SECOND_PASS_RULES = ("name_dob_city", "name_dob_city_linked", LONE_RULE, "scored")


def _second_pass(rule: Column) -> Column:
    """True for an edge of the second pass (name_dob_city(_linked), a fuzzy rule, scored)."""
    return rule.isin(*SECOND_PASS_RULES) | rule.startswith("fuzzy_")


def conflicting_components(
    edges: DataFrame, profiles: DataFrame, conf: IdentityConf, mat: Callable
) -> tuple[DataFrame, DataFrame]:
    """Components of ``edges`` to cluster again: those that may hold two records the
    never-link rules keep apart (more than one valid ID card, or both genders and
    several birth dates; when never_link.split_chains), and those holding more than
    fuzzy.max_cluster_records CRM records and a second-pass edge.

    Output: (labels: one node id -> component, conflicting: one component).
    """
    e = edges.select(
        node_id(F.col("src_source"), F.col("src_key")).alias("src"),
        node_id(F.col("dst_source"), F.col("dst_key")).alias("dst"),
        _second_pass(F.col("rule")).alias("second_pass"),
    )
    nodes = e.select(F.col("src").alias("id")).unionByName(e.select(F.col("dst").alias("id")))
    cc = conf.components
    labels, _ = connected_components(
        nodes, e.select("src", "dst"), mat, cc.max_rounds, cc.local_max_edges
    )
    labels = mat(labels, "never_link_labels")
    crm = profiles.withColumn("id", node_id(F.lit("crm"), F.col("crm_id"))).join(labels, "id")
    rules = conf.never_link
    stats = crm.groupBy("component").agg(*_component_stats())
    fuzzy_components = (
        e.filter("second_pass")
        .join(labels.withColumnRenamed("id", "src"), "src")
        .select("component")
        .distinct()
        .withColumn("has_fuzzy", F.lit(True))
    )
    stats = stats.join(fuzzy_components, "component", "left")
    conflict = F.col("has_fuzzy").isNotNull() & (
        F.col("n_records") > conf.fuzzy.max_cluster_records
    )
    if rules.split_chains and rules.different_valid_id_cards:
        conflict = conflict | F.col("several_ids")
    if rules.split_chains and rules.different_gender_and_birth_date:
        conflict = conflict | (F.col("several_genders") & F.col("several_dates"))
    return labels, stats.filter(conflict).select("component")


def _component_stats() -> list[Column]:
    """What :func:`conflicting_components` asks of a component's CRM records (one row
    per record: ``profiles`` holds one per crm_id, ``labels`` one per node): whether they
    hold several valid ID cards, genders, birth dates (nulls aside), and how many they
    are. "Several" is a smallest value below the largest: four COUNT(DISTINCT)s in one
    aggregate took 15 s of a 1M full run on Sail 0.7.2 (each a grouping of its own),
    where plain MIN and MAX are one pass."""
    several = [
        F.coalesce(F.min(column) < F.max(column), F.lit(False)).alias(f"several_{name}")
        for name, column in (("ids", "id_card"), ("genders", "gender"), ("dates", "birth_date"))
    ]
    return [*several, F.count(F.lit(1)).alias("n_records")]


def refuse_never_link_chains(
    edges: DataFrame, profiles: DataFrame, conf: IdentityConf, mat: Callable
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Split every component that holds two records the never-link rules keep apart, or
    more than fuzzy.max_cluster_records CRM records and a second-pass edge: its edges
    are clustered again strongest first (high, medium, low confidence) and an edge
    that would join such records, or a second-pass edge that would exceed the cap, is
    refused (:func:`jobs.identity.components.refuse_merges`).

    Inputs: ``edges`` (one kept edge, EDGE_COLUMNS); ``profiles``
    (:func:`jobs.identity.corroborate.crm_profiles`). Output: (kept edges, all refused
    edges, the edges refused by the cap), all EDGE_COLUMNS.
    """
    labels, conflicting = conflicting_components(edges, profiles, conf, mat)
    refused, by_cap = refuse_in_components(edges, labels, conflicting, profiles, conf, mat)
    return without_edges(edges, refused), refused, by_cap


EDGE_KEYS = ["src_source", "src_key", "dst_source", "dst_key", "rule"]


def without_edges(edges: DataFrame, drop: DataFrame) -> DataFrame:
    """``edges`` less those of ``drop`` (matched on EDGE_KEYS)."""
    return edges.join(drop.select(*EDGE_KEYS), EDGE_KEYS, "left_anti")


def refuse_in_components(
    edges: DataFrame,
    labels: DataFrame,
    conflicting: DataFrame,
    profiles: DataFrame,
    conf: IdentityConf,
    mat: Callable,
) -> tuple[DataFrame, DataFrame]:
    """The edges refused inside the ``conflicting`` components (one ``component``) of
    ``labels`` (one node id -> component): clustered again on the driver strongest first,
    whole components at a time, at most never_link.max_split_edges edges a batch.

    Output: (all refused edges, those refused by the cap), EDGE_COLUMNS.
    """
    in_conflict = labels.join(conflicting, "component", "left_semi")
    suspect = edges.withColumn("id", node_id(F.col("src_source"), F.col("src_key"))).join(
        in_conflict, "id"
    )
    crm = profiles.withColumn("id", node_id(F.lit("crm"), F.col("crm_id"))).join(in_conflict, "id")
    limit = conf.never_link.max_split_edges
    rows = _sorted_rows(suspect, limit + 1)
    if not rows:
        return _edge_frames(edges, [], [])
    if len(rows) <= limit:  # the usual night: one batch, one collect of the edges
        never, cap = _refuse_batch(rows, crm, conf)
        return _edge_frames(edges, never + cap, cap)
    # More than one batch: the suspect edges written once (each batch reads them), their
    # components counted and packed into batches.
    suspect = mat(suspect, "never_link_suspect")
    sizes = {r["component"]: r["count"] for r in suspect.groupBy("component").count().collect()}
    batches = split_batches(sizes, limit)
    key = edges.sparkSession.createDataFrame(
        [(c, b) for b, comps in enumerate(batches) for c in comps], "component long, batch int"
    )
    batched = suspect.join(key, "component")
    crm = mat(crm.join(key, "component"), "never_link_profiles")
    refused: list[tuple] = []
    by_cap: list[tuple] = []
    for b in range(len(batches)):
        in_batch = F.col("batch") == b
        never, cap = _refuse_batch(
            _sorted_rows(batched.filter(in_batch)), crm.filter(in_batch), conf
        )
        refused += never + cap
        by_cap += cap
    return _edge_frames(edges, refused, by_cap)


def _sorted_rows(suspect: DataFrame, limit: int | None = None) -> list[Row]:
    """The ``suspect`` edges collected in the order the split clusters them (at most
    ``limit``)."""
    ordered = suspect.orderBy("rule", "src_source", "src_key", "dst_source", "dst_key")
    return (ordered if limit is None else ordered.limit(limit)).collect()


def _edge_frames(
    edges: DataFrame, refused: list[tuple], by_cap: list[tuple]
) -> tuple[DataFrame, DataFrame]:
    """(refused, by_cap) tuples as DataFrames of ``edges``' EDGE_COLUMNS."""
    schema = edges.select(*EDGE_COLUMNS).schema
    spark = edges.sparkSession
    return spark.createDataFrame(refused, schema), spark.createDataFrame(by_cap, schema)


def split_batches(sizes: dict[int, int], limit: int) -> list[list[int]]:
    """Components (component -> edge count) in batches of at most ``limit`` edges, in
    component order; a component above ``limit`` fails (it cannot be split in parts)."""
    batches: list[list[int]] = []
    total = limit + 1
    for component in sorted(sizes):
        n = sizes[component]
        if n > limit:
            raise ValueError(
                f"never-link split: one component to split holds {n} edges, more than "
                f"{limit} (never_link.max_split_edges in conf/identity.yaml)"
            )
        if total + n > limit:
            batches.append([])
            total = 0
        batches[-1].append(component)
        total += n
    return batches


def _refuse_batch(
    rows: list[Row], crm: DataFrame, conf: IdentityConf
) -> tuple[list[tuple], list[tuple]]:
    """One batch of whole components: its edges (``rows``, :func:`_sorted_rows`) and CRM
    profiles (collected here), clustered strongest first. Output: (edges refused by the
    never-link rules, edges refused by the cap), as tuples of EDGE_COLUMNS."""
    profile = {
        f"crm:{p['crm_id']}": LinkProfile(p["id_card"], p["gender"], p["birth_date"])
        for p in crm.select("crm_id", "id_card", "gender", "birth_date").collect()
    }
    triples = [
        (f"{r['src_source']}:{r['src_key']}", f"{r['dst_source']}:{r['dst_key']}",
         r["confidence"]) for r in rows
    ]  # fmt: skip
    rules = conf.never_link
    split = rules.split_chains
    out = refuse_merges(
        triples,
        profile,
        split and rules.different_valid_id_cards,
        split and rules.different_gender_and_birth_date,
        max_records=conf.fuzzy.max_cluster_records,
        capped=[i for i, r in enumerate(rows) if _is_second_pass_rule(r["rule"])],
    )

    def as_tuples(indices: list[int]) -> list[tuple]:
        return [tuple(rows[i][c] for c in EDGE_COLUMNS) for i in indices]

    return as_tuples(out.never_link), as_tuples(out.cap)


def _is_second_pass_rule(rule: str) -> bool:
    """Python twin of :func:`_second_pass`."""
    return rule in SECOND_PASS_RULES or rule.startswith("fuzzy_")


@dataclass
class SecondPassInputs:
    """What the second pass reads (see :func:`build_graph` for each one's grain)."""

    crm: DataFrame  # one CRM row version, flagged (latest_crm_versions)
    latest: DataFrame  # one CRM record's latest version
    kept: DataFrame  # one kept first-pass edge (materialised), EDGE_COLUMNS
    profiles: DataFrame  # one crm_id (jobs.identity.corroborate.crm_profiles)
    crm_ids: DataFrame  # one (row version, identifier type) (crm_identifiers)
    junk_cands: DataFrame  # one (id_type, key, x, y) (second_pass_junk_pairs)


def full_second_pass(
    inp: SecondPassInputs, conf: IdentityConf, mat: Callable
) -> tuple[DataFrame, DataFrame | None]:
    """The second pass over every CRM record: name_dob_city(_linked) edges, the fuzzy
    rules' edges over the candidate pairs and (``scored.enabled``) the scored pass.

    Output: (second-pass edges, EDGE_COLUMNS; the scored pairs the never-link rules
    vetoed, or None without the scored pass).
    """
    ndc = name_dob_city_edges(inp.crm, inp.kept, conf, inp.profiles, mat)
    second = mat(ndc, "name_dob_city")
    if not conf.fuzzy.enabled:
        return second, None
    # Pairs already sharing a value node or linked by name_dob_city need no edge.
    shared = shared_value_pairs(inp.kept).unionByName(
        second.select(F.col("src_key").alias("x"), F.col("dst_key").alias("y"))
    )
    junk_pairs = inp.junk_cands.select("x", "y").distinct()
    # Materialised (fuzzy_compared): labelling reads the comparisons' columns in every
    # rule's condition, and with the comparisons inlined they were computed again and
    # again (at 1M members, 12.4M pairs: compared, labelled and made edges in 49.5 s;
    # compared once 29.4 s, then labelled 0.6 s).
    compared = compared_pairs(inp.latest, inp.profiles, inp.crm_ids, shared, junk_pairs, conf, mat)
    labelled = labelled_pairs(compared, conf)
    second = second.unionByName(rule_edges(labelled))
    if not conf.scored.enabled:
        return second, None
    linked, vetoed = scored_pairs(labelled, conf)
    return second.unionByName(linked), vetoed


def build_graph(
    spark: SparkSession,
    crm: DataFrame,
    orders: DataFrame,
    links: DataFrame,
    web_ids: DataFrame,
    conf: IdentityConf,
    key: bytes,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
    refuse_chains: Callable | None = None,
    second_pass: Callable | None = None,
) -> Graph:
    """Identities, kept edges and blocked values (all dated <= D).

    Inputs: bronze/crm_members (one row version); ``orders`` one POS order
    (:func:`orders_from_parts`); ``links`` one (anon, user) login pair
    (:func:`links_from_parts`); ``web_ids`` one web identity (:func:`web_ids_from_parts`).
    See :class:`Graph` for the outputs' grain. ``materialise(df, name)`` (e.g. a Parquet
    write and read back) cuts the lineage of the intermediate results used several
    times; without it plans grow with every reuse. ``refuse_chains`` replaces
    :func:`refuse_never_link_chains` (same arguments and result), e.g. by the incremental
    check of jobs.identity.chains; ``second_pass`` replaces :func:`full_second_pass`
    (same arguments and result), e.g. by the incremental pass of jobs.identity.second.
    """
    mat = materialise or (lambda df, _name: df)
    crm_ids = mat(crm_identifiers(crm, key), "crm_ids")
    raw = mat(_raw_edges(crm_ids, orders, links), "raw_edges")
    latest = latest_crm_versions(crm).filter(F.col("is_latest"))
    profiles = mat(crm_profiles(latest, crm_ids), "crm_profiles")
    conflicts = conflicting_values(crm_ids, profiles, conf, mat)
    blocked = mat(
        blocked_values(spark, crm_ids, orders, raw, conf, key, conflicts, mat), "blocked_raw"
    )

    type_of = F.lit(None).cast("string")
    for id_type, src in NODE_SOURCE.items():
        type_of = F.when(F.col("node_source") == src, id_type).otherwise(type_of)
    bkeys = blocked.select(F.col("id_type").alias("bt"), F.col("key").alias("bk"))

    def not_blocked(df: DataFrame, side: str) -> DataFrame:
        d = df.withColumn("node_source", F.col(f"{side}_source")).withColumn("bt0", type_of)
        d = d.join(
            bkeys,
            (F.col("bt0") == F.col("bt")) & (F.col(f"{side}_key") == F.col("bk")),
            "left_anti",
        )
        return d.drop("node_source", "bt0")

    kept = not_blocked(not_blocked(raw, "src"), "dst")
    # A card keyed with too many phones keeps its CRM link but not its till links.
    busy_cards = (
        orders.filter(F.col("card").isNotNull() & F.col("phone_key").isNotNull())
        .groupBy("card")
        .agg(F.countDistinct("phone_key").alias("n"))
        .filter(F.col("n") > conf.junk.max_phones_per_card)
        .select(F.col("card").alias("src_key"), F.lit("pos_card_phone").alias("rule"))
    )
    kept = kept.join(busy_cards, ["src_key", "rule"], "left_anti")
    kept = mat(kept, "kept_edges")
    crm_kept = kept.filter(F.col("src_source") == "crm")
    superseded = mat(_superseded(crm_kept), "superseded")
    kept = kept.join(
        superseded.select("src_source", "src_key", "dst_source", "dst_key", "rule"),
        ["src_source", "src_key", "dst_source", "dst_key", "rule"],
        "left_anti",
    ).select(*EDGE_COLUMNS)
    junk = blocked.filter(
        F.col("reason").isin("shared_by_many", "never_link", "never_link,shared_by_many")
    ).select("id_type", "key")
    # Materialised: read by the corroborated and one-person rules, the fuzzy pass and
    # the junk-pair state; each read grouped every valid identifier of every record.
    junk_cands = mat(junk_candidate_pairs(crm_ids, junk, conf), "junk_candidates")
    if conf.junk.corroborate.enabled:
        kept = kept.unionByName(corroborated_edges(profiles, crm_ids, junk_cands, conf, mat))
    vetoed = None
    if conf.second_pass.enabled:
        kept = mat(kept, "kept_first_pass")
        second_junk = second_pass_junk_pairs(junk_cands, profiles, conf)
        inputs = SecondPassInputs(crm, latest, kept, profiles, crm_ids, second_junk)
        second, vetoed = (second_pass or full_second_pass)(inputs, conf, mat)
        if conf.second_pass.lone.enabled:
            # Computed whole on every run (few records): a night's pass may hand back
            # yesterday's edges of the rule, which today's replace. The pass's other
            # edges are written first: the rule reads them twice, then the write of all
            # kept edges below; inlined, the fuzzy rules' expressions sat three times in
            # one plan (the local JVM's optimizer ran out of heap on it,
            # tests/jvm/test_parity.py).
            second = mat(second.filter(F.col("rule") != LONE_RULE), "second_edges")
            placeholders = blocked.filter(F.col("reason").contains("deny_list"))
            lone = lone_edges(latest, kept, second, profiles, conf, crm_ids, placeholders, mat)
            second = second.unionByName(lone)
        kept = kept.unionByName(second)
    refused = refused_cap = spark.createDataFrame([], kept.select(*EDGE_COLUMNS).schema)
    if conf.never_link.split_chains or conf.second_pass.enabled:
        refuse = refuse_chains or refuse_never_link_chains
        kept, refused, refused_cap = refuse(mat(kept, "kept_all"), profiles, conf, mat)
    if vetoed is not None:
        refused = refused.unionByName(vetoed)  # scored above the threshold, never-link

    identities = source_identities(crm_ids, crm, orders, web_ids)
    node_type = F.when(F.col("source") == "pos_phone", "phone").when(
        F.col("source") == "pos_card", "card"
    )
    identities = (
        identities.withColumn("bt0", node_type)
        .join(
            bkeys.withColumn("blocked", F.lit(True)),
            (F.col("bt0") == F.col("bt")) & (F.col("key") == F.col("bk")),
            "left",
        )
        .select(
            "source",
            "key",
            "first_seen",
            "last_seen",
            F.coalesce("blocked", F.lit(False)).alias("blocked"),
        )
    )
    blocked_out = blocked.select(
        "id_type",
        F.col("key").alias("value_hash"),
        _mask(F.col("id_type"), F.col("value")).alias("value_masked"),
        "n_crm_records",
        "n_source_identities",
        "reason",
    )
    return Graph(
        identities=identities,
        edges=kept,
        blocked=blocked_out,
        superseded=superseded.select(*EDGE_COLUMNS),
        refused=refused,
        refused_cap=refused_cap,
    )
