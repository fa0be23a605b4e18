"""A record holding a name and little else (rule ``lone_rare_name``, issue 16).

Some CRM records carry a name and one of a city, a birth date or a province, and nothing
else a rule can compare: no phone, e-mail or ID card (a member card of their own at
most; a deny-listed placeholder counts as none), and nothing links them to another
record yet. A name and a place is no evidence where the name is common (every 王伟 of
a city), but a name borne by a handful of records in the whole lake, all of them that
one person, is that person's: the weight of a rare value, as a probabilistic linker's
term frequencies give it.

A *lone* record links to the person of its *group*: the records of its name (the
characters sorted: tokens in either order) that share its city, or where it has no city
its birth date, or where it has neither its province. It links when

* the name is held by at most ``second_pass.lone.max_name_records`` CRM records in the
  whole lake, any place;
* the group's other records are one person: linked to each other already (a shared
  value or an edge of either pass), at least one of them;
* no two records of the group disagree (name no typo of the other, birth date, gender,
  city) or are kept apart by a never-link rule;

one edge to the group's smallest record that is not lone, confidence from the conf; as
a second-pass edge it is under the fuzzy cluster cap and the never-link chain split.
It reads the latest CRM versions, their profiles and both passes' other edges, all
whole on every run (full or incremental): a night computes the same edges as a full run.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.identity.conf import IdentityConf
from jobs.identity.corroborate import disagree, never_link, pairs_within

LONE_RULE = "lone_rare_name"
# The identifiers that tell who a record is (a member card is each registration's own,
# a web user id links to the web only).
IDENTIFIER_TYPES = ("phone", "email", "id_card")


def name_key(name_sorted: Column) -> Column:
    """A name's characters sorted (``王梅`` = ``梅 王``, ``ashleigh quilliam`` =
    ``quilliam ashleigh``): the name part of the group key."""
    return F.array_join(F.array_sort(F.split(name_sorted, "")), "")


def _places(latest: DataFrame) -> dict[str, Column]:
    """A record's places, tagged (city, birth date, province), in the order a lone
    record's group is chosen."""
    return {
        "city": N.norm_city(F.col("city")),
        "dob": F.col("birth_date").cast("string"),
        "province": N.norm_city(F.col("province")),
    }


def lone_records(
    latest: DataFrame,
    kept: DataFrame,
    second: DataFrame,
    crm_ids: DataFrame,
    placeholders: DataFrame,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """CRM records whose latest version has a name and a city, birth date or province
    but no phone, e-mail or ID card (a deny-listed placeholder counts as none; a value
    shared with other people, such as a family's phone, does count), and no link to
    another CRM record yet (no CRM-to-CRM edge of either pass in ``kept`` or ``second``,
    no value node shared with another record). ``crm_ids``:
    :func:`jobs.identity.graph.crm_identifiers`; ``placeholders``: one deny-listed
    (id_type, key); ``materialise`` as in :func:`lone_edges`. Output grain: one crm_id."""
    mat = materialise or (lambda df, _name: df)
    holding = (
        crm_ids.filter(
            F.col("valid") & F.col("is_latest") & F.col("id_type").isin(*IDENTIFIER_TYPES)
        )
        .join(F.broadcast(placeholders.select("id_type", "key")), ["id_type", "key"], "left_anti")
        .select("crm_id")
    )
    somewhere = F.lit(False)
    for place in _places(latest).values():
        somewhere = somewhere | place.isNotNull()
    candidates = latest.filter(N.norm_name(F.col("name")).isNotNull() & somewhere).select(
        F.col("crm_key").alias("crm_id")
    )
    # Written once: read by each side of the links' search below and by the result.
    lone = mat(candidates.join(holding, "crm_id", "left_anti"), "lone_candidates")
    crm_edges = kept.filter(F.col("src_source") == "crm")
    pairs = _crm_pairs(crm_edges, second, lone)
    ends = pairs.select(F.explode(F.array("x", "y")).alias("crm_id"))
    return lone.join(ends, "crm_id", "left_anti")


def _crm_pairs(crm_edges: DataFrame, second: DataFrame, records: DataFrame) -> DataFrame:
    """Pairs of CRM records linked to each other, one of them among ``records`` (one
    crm_id; few, broadcast): a CRM-to-CRM edge of either pass or a value node both hold.
    Grain: one (x, y), x < y (may repeat)."""
    wanted = F.broadcast(records.select("crm_id").distinct())
    edges = crm_edges.unionByName(second.select(*crm_edges.columns))
    direct = edges.filter(F.col("dst_source") == "crm").select(
        F.least("src_key", "dst_key").alias("x"), F.greatest("src_key", "dst_key").alias("y")
    )
    # Each edge read once: its two ends side by side, kept if either is wanted.
    direct = (
        direct.select("x", "y", F.explode(F.array("x", "y")).alias("crm_id"))
        .join(wanted, "crm_id", "left_semi")
        .select("x", "y")
    )
    values = crm_edges.filter(F.col("dst_source") != "crm").select(
        F.col("src_key").alias("crm_id"), "dst_source", "dst_key"
    )
    theirs = values.join(wanted, "crm_id", "left_semi")
    holders = values.join(
        F.broadcast(theirs.select("dst_source", "dst_key").distinct()),
        ["dst_source", "dst_key"],
        "left_semi",
    )
    shared = (
        theirs.alias("p")
        .join(holders.alias("q"), ["dst_source", "dst_key"])
        .filter(F.col("p.crm_id") != F.col("q.crm_id"))
        .select(
            F.least("p.crm_id", "q.crm_id").alias("x"),
            F.greatest("p.crm_id", "q.crm_id").alias("y"),
        )
    )
    return direct.unionByName(shared)


def lone_groups(
    latest: DataFrame, profiles: DataFrame, lone: DataFrame, max_name_records: int
) -> DataFrame:
    """The group rows of every rare name some lone record bears (at most
    ``max_name_records`` records in the lake): a lone record in the group of its first
    place (city, else birth date, else province), any other record in one group per
    place it has. Output grain: one (crm_id, place); nk (name key), place (tag|value),
    city, seen, lone, and the profile's name, name_sorted, birth_date, gender, id_card."""
    places = _places(latest)
    tagged = [
        F.when(value.isNotNull(), F.concat(F.lit(tag + "|"), value))
        for tag, value in places.items()
    ]
    keyed = latest.select(
        F.col("crm_key").alias("crm_id"),
        F.col("_business_date").alias("seen"),
        places["city"].alias("city"),
        F.coalesce(*tagged).alias("first_place"),
        F.array(*tagged).alias("all_places"),
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
    )
    marked = lone.select("crm_id", F.lit(True).alias("lone"))
    rows = (
        holders.join(rare.select("nk"), "nk", "left_semi")
        .join(marked, "crm_id", "left")
        .withColumn("lone", F.coalesce("lone", F.lit(False)))
    )
    place = F.when(F.col("lone"), F.array("first_place")).otherwise(F.col("all_places"))
    return (
        rows.withColumn("place", F.explode(place))
        .filter(F.col("place").isNotNull())
        .drop("first_place", "all_places")
    )


def _name_components(groups: DataFrame, links: DataFrame) -> DataFrame:
    """Which person each record of the groups' names is, by the links among the records
    of one name (any place): connected components, so that a chain (a-b by a phone,
    b-c by an e-mail) is one person. The links are few (the records of a few rare
    names): solved on the driver. Output grain: one crm_id of ``groups``; comp (the
    smallest crm_id of its component)."""
    names = groups.select("nk", "crm_id").distinct()
    both_ends = links.join(names.withColumnRenamed("crm_id", "x"), "x").join(
        names.withColumnRenamed("crm_id", "y").withColumnRenamed("nk", "nk_y"), "y"
    )
    pairs = both_ends.filter(F.col("nk") == F.col("nk_y")).select("x", "y").distinct()
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for row in pairs.collect():
        a, b = root(row["x"]), root(row["y"])
        parent[max(a, b)] = min(a, b)
    spark = groups.sparkSession
    comps = spark.createDataFrame(
        [(node, root(node)) for node in parent], "crm_id string, comp string"
    )
    return names.join(comps, "crm_id", "left").select(
        "crm_id", F.coalesce("comp", "crm_id").alias("comp")
    )


def _group_people(groups: DataFrame, links: DataFrame) -> DataFrame:
    """Groups whose records that are not lone are one person (one component of
    :func:`_name_components`, at least one record). Output grain: one (nk, place); y
    (the person's smallest crm_id), y_seen (its date)."""
    others = groups.filter(~F.col("lone")).join(_name_components(groups, links), "crm_id")
    return (
        others.groupBy("nk", "place")
        .agg(
            F.min("crm_id").alias("y"),
            F.min_by("seen", "crm_id").alias("y_seen"),
            F.min("comp").alias("first_comp"),
            F.max("comp").alias("last_comp"),
        )
        .filter(F.col("first_comp") == F.col("last_comp"))
        .select("nk", "place", "y", "y_seen")
    )


def lone_edges(
    latest: DataFrame,
    kept: DataFrame,
    second: DataFrame,
    profiles: DataFrame,
    conf: IdentityConf,
    crm_ids: DataFrame,
    placeholders: DataFrame,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Edges of rule ``lone_rare_name`` (see the module). Inputs: ``latest`` one CRM
    record's latest version; ``kept`` the first pass's kept edges (EDGE_COLUMNS);
    ``second`` the second pass's other edges; ``profiles``
    :func:`jobs.identity.corroborate.crm_profiles`; ``crm_ids`` and ``placeholders`` as
    in :func:`lone_records`. ``materialise(df, name)``: the lone
    records and their names' group rows (a few) are written once, so that every later
    join reads them as small tables. Output grain: one edge (crm x -> crm y), x < y,
    dated by the later of the two records' latest versions."""
    mat = materialise or (lambda df, _name: df)
    lone_conf = conf.second_pass.lone
    lone = mat(lone_records(latest, kept, second, crm_ids, placeholders, mat), "lone_records")
    groups = mat(lone_groups(latest, profiles, lone, lone_conf.max_name_records), "lone_groups")
    pairs = pairs_within(groups, ["nk", "place"])
    cities_differ = F.coalesce(F.col("a.city") != F.col("b.city"), F.lit(False))
    bad = (disagree() | never_link(conf) | cities_differ).cast("int")
    checked = pairs.select("nk", "place", bad.alias("bad"))
    agreeing = checked.groupBy("nk", "place").agg(F.max("bad").alias("bad")).filter("bad = 0")
    crm_edges = kept.filter(F.col("src_source") == "crm")
    links = _crm_pairs(crm_edges, second, groups.filter(~F.col("lone")))
    person = _group_people(groups, links).join(
        agreeing.select("nk", "place"), ["nk", "place"], "left_semi"
    )
    joined = groups.filter(F.col("lone")).join(person, ["nk", "place"])
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
