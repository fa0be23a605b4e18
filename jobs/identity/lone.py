"""A record holding nothing but a name and a city (rule ``name_city_lone``, issue 16).

Some CRM records carry a name and a city and nothing else a rule can compare: no birth
date, no phone, e-mail or ID card (a member card of their own at most; a placeholder or
junk value counts as none), and nothing links them to another record yet. Name + city alone is no evidence where the name is common
(every 王伟 of a city), but a name borne by a handful of records in the whole lake, all of
them in that city one person by everything they hold, is that person's: the weight of a
rare value, as a probabilistic linker's term frequencies give it.

A *lone* record links to the person of its name + city group when

* the name (its characters sorted: tokens in either order) is held by at most
  ``second_pass.lone.max_name_records`` CRM records in the whole lake, any city;
* the group (same name, same city) holds at least one record that is not lone, and no
  two of its records disagree (name no typo of the other, birth date, gender) or are
  kept apart by a never-link rule;

one edge to the group's smallest non-lone record, confidence from the conf; as a
second-pass edge it is under the fuzzy cluster cap and the never-link chain split.
It reads the latest CRM versions, their profiles and both passes' other edges, all
whole on every run (full or incremental): a night computes the same edges as a full run.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.identity.conf import IdentityConf
from jobs.identity.corroborate import disagree, never_link, pairs_within

LONE_RULE = "name_city_lone"
# First-pass edges from a CRM record to a value only one person holds (a member card is
# each registration's own, a web user id links to the web only).
IDENTIFIER_RULES = ("crm_phone", "crm_email", "crm_id_card")


def name_key(name_sorted: F.Column) -> F.Column:
    """A name's characters sorted (``王梅`` = ``梅 王``, ``ashleigh quilliam`` =
    ``quilliam ashleigh``): the name part of the group key."""
    return F.array_join(F.array_sort(F.split(name_sorted, "")), "")


def lone_records(latest: DataFrame, kept: DataFrame, second: DataFrame) -> DataFrame:
    """CRM records whose latest version has a name and a city but no birth date, no kept
    first-pass edge to a phone, e-mail or ID card, and no link to another CRM record yet
    (no CRM-to-CRM edge of either pass in ``kept`` or ``second``, no value node shared
    with another record). Output grain: one crm_id."""
    crm_edges = kept.filter(F.col("src_source") == "crm")
    holding = crm_edges.filter(F.col("rule").isin(*IDENTIFIER_RULES)).select(
        F.col("src_key").alias("crm_id")
    )
    candidates = latest.filter(
        F.col("birth_date").isNull()
        & N.norm_name(F.col("name")).isNotNull()
        & N.norm_city(F.col("city")).isNotNull()
    ).select(F.col("crm_key").alias("crm_id"))
    lone = candidates.join(holding, "crm_id", "left_anti")
    return lone.join(_linked(crm_edges, second, lone), "crm_id", "left_anti")


def _linked(crm_edges: DataFrame, second: DataFrame, records: DataFrame) -> DataFrame:
    """Those of ``records`` (one crm_id) already linked to another CRM record: an end of
    a CRM-to-CRM edge, or holding a value node another record holds. One crm_id (may
    repeat). The values are those of a few records: broadcast, every CRM edge is only
    streamed past them."""
    pairs = crm_edges.unionByName(second.select(*crm_edges.columns)).filter(
        F.col("dst_source") == "crm"
    )
    ends = pairs.select(F.col("src_key").alias("crm_id")).unionByName(
        pairs.select(F.col("dst_key").alias("crm_id"))
    )
    values = crm_edges.filter(F.col("dst_source") != "crm").select(
        F.col("src_key").alias("crm_id"), "dst_source", "dst_key"
    )
    theirs = values.join(records, "crm_id", "left_semi")
    wanted = F.broadcast(theirs.select("dst_source", "dst_key").distinct())
    shared = (
        values.join(wanted, ["dst_source", "dst_key"], "left_semi")
        .groupBy("dst_source", "dst_key")
        .agg(F.count(F.lit(1)).alias("n"))
        .filter(F.col("n") > 1)
    )
    sharing = theirs.join(shared, ["dst_source", "dst_key"], "left_semi").select("crm_id")
    return ends.unionByName(sharing)


def name_city_groups(
    latest: DataFrame, profiles: DataFrame, lone: DataFrame, max_name_records: int
) -> DataFrame:
    """Every record of a rare name some lone record bears (at most ``max_name_records``
    records in the lake), with its group's city. Output grain: one crm_id; nk (name key),
    city, seen, lone, and the profile's name, name_sorted, birth_date, gender, id_card."""
    keyed = latest.select(
        F.col("crm_key").alias("crm_id"),
        F.col("_business_date").alias("seen"),
        N.norm_city(F.col("city")).alias("city"),
    ).join(profiles, "crm_id")
    keyed = keyed.withColumn("nk", name_key(F.col("name_sorted"))).filter(
        F.col("nk").isNotNull() & (F.length("nk") > 0)
    )
    wanted = keyed.join(lone, "crm_id", "left_semi").select("nk").distinct()
    holders = keyed.join(F.broadcast(wanted), "nk", "left_semi")
    rare = (
        holders.groupBy("nk")
        .agg(F.count(F.lit(1)).alias("n"))
        .filter(F.col("n") <= max_name_records)
        .select("nk")
    )
    marked = lone.select("crm_id", F.lit(True).alias("lone"))
    return (
        holders.join(rare, "nk", "left_semi")
        .filter(F.col("city").isNotNull())
        .join(marked, "crm_id", "left")
        .withColumn("lone", F.coalesce("lone", F.lit(False)))
    )


def lone_edges(
    latest: DataFrame,
    kept: DataFrame,
    second: DataFrame,
    profiles: DataFrame,
    conf: IdentityConf,
) -> DataFrame:
    """Edges of rule ``name_city_lone`` (see the module). Inputs: ``latest`` one CRM
    record's latest version; ``kept`` the first pass's kept edges (EDGE_COLUMNS);
    ``second`` the second pass's other edges; ``profiles`` :func:`jobs.identity.corroborate.crm_profiles`. Output grain: one edge
    (crm x -> crm y), x < y, dated by the later of the two records' latest versions."""
    lone_conf = conf.second_pass.lone
    groups = name_city_groups(
        latest, profiles, lone_records(latest, kept, second), lone_conf.max_name_records
    )
    pairs = pairs_within(groups, ["nk", "city"])
    bad = (disagree() | never_link(conf)).cast("int")
    checked = pairs.select("nk", "city", "a", "b", bad.alias("bad"))
    # Groups whose records all agree, with their smallest record that is not lone.
    agreeing = checked.groupBy("nk", "city").agg(F.max("bad").alias("bad")).filter("bad = 0")
    person = (
        groups.filter(~F.col("lone"))
        .groupBy("nk", "city")
        .agg(F.min("crm_id").alias("y"), F.min_by("seen", "crm_id").alias("y_seen"))
        .join(agreeing.select("nk", "city"), ["nk", "city"], "left_semi")
    )
    joined = groups.filter(F.col("lone")).join(person, ["nk", "city"])
    return joined.select(
        F.lit("crm").alias("src_source"),
        F.least("crm_id", "y").alias("src_key"),
        F.lit("crm").alias("dst_source"),
        F.greatest("crm_id", "y").alias("dst_key"),
        F.lit(LONE_RULE).alias("rule"),
        F.lit(lone_conf.confidence).alias("confidence"),
        F.greatest("seen", "y_seen").alias("first_seen"),
        F.greatest("seen", "y_seen").alias("last_seen"),
    )
