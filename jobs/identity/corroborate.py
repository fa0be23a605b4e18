"""Junk that is junk: an identifier value held by more CRM records than
``junk.max_crm_records_per_value`` links nothing by itself, but the records holding it
that corroborate each other (same birth date, names within a small edit distance, or
another shared identifier) are still linked pairwise. Records that do not corroborate
stay apart, and the value stays reported as junk for them. A holder with nothing to
corroborate (no name, no birth date) still links when the holders that corroborate are
one person and nothing on it disagrees (rule ``one_person_<type>``).

Never-link rules (``never_link`` in conf/identity.yaml) veto a pair even when it
corroborates: two different valid ID cards, different genders with different birth
dates. A phone held by records whose names are no typo of each other and whose birth
dates differ (a family sharing a phone) links nothing by itself either. A record whose corroborating partners hold two different valid ID cards links
none of them, so a shared value never chains two people with different ID cards.

Pure transforms: DataFrames in, DataFrames out.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.identity.conf import IdentityConf

# Han characters only (Java and Rust regex engines both accept a literal range).
HAN_ONLY = "^[\u3400-\u9fff]+$"
# Gender codes of the CRM export (CONTRACT section 3) -> one letter.
_GENDER = {"M": "M", "男": "M", "F": "F", "女": "F"}


def _gender(c: Column) -> Column:
    g = F.upper(F.trim(c))
    out = F.lit(None).cast("string")
    for code, letter in _GENDER.items():
        out = F.when(g == code, letter).otherwise(out)
    return out


def sorted_name(c: Column) -> Column:
    """Name tokens lower-cased and sorted, joined without spaces: ``quilliam ashleigh`` and
    ``ashleigh quilliam`` give the same text. Null when there is no name."""
    tokens = F.split(F.lower(F.trim(N.fold_text(F.coalesce(c, F.lit(""))))), r"[\s\u3000·.]+")
    s = F.concat_ws("", F.array_sort(tokens))
    return F.when(F.length(s) > 0, s)


def crm_profiles(latest: DataFrame, crm_ids: DataFrame) -> DataFrame:
    """The attributes that corroborate or veto a pair, from each record's latest version.

    Input: ``latest`` one CRM record's latest version (crm_key, name, birth_date, gender);
    ``crm_ids`` :func:`jobs.identity.graph.crm_identifiers`. Output grain: one crm_id;
    columns name (norm_name), name_sorted, birth_date, gender (M/F), id_card (valid key).
    """
    ids = (
        crm_ids.filter((F.col("id_type") == "id_card") & F.col("valid") & F.col("is_latest"))
        .groupBy("crm_id")
        .agg(F.max("key").alias("id_card"))
    )
    return latest.select(
        F.col("crm_key").alias("crm_id"),
        N.norm_name(F.col("name")).alias("name"),
        sorted_name(F.col("name")).alias("name_sorted"),
        F.col("birth_date"),
        _gender(F.col("gender")).alias("gender"),
    ).join(ids, "crm_id", "left")


def never_link(conf: IdentityConf, a: str = "a", b: str = "b") -> Column:
    """True when the never-link rules keep records ``a`` and ``b`` apart."""
    rules = conf.never_link

    def col(side: str, name: str) -> Column:
        return F.col(f"{side}.{name}")

    veto = F.lit(False)
    if rules.different_valid_id_cards:
        veto = veto | F.coalesce(col(a, "id_card") != col(b, "id_card"), F.lit(False))
    if rules.different_gender_and_birth_date:
        veto = veto | F.coalesce(
            (col(a, "gender") != col(b, "gender")) & (col(a, "birth_date") != col(b, "birth_date")),
            F.lit(False),
        )
    return veto


def day_month_swapped(a_dob: Column, b_dob: Column) -> Column:
    """Day and month of one birth date are month and day of the other (03-04 / 04-03)."""
    return (F.month(a_dob) == F.dayofmonth(b_dob)) & (F.dayofmonth(a_dob) == F.month(b_dob))


def names_and_birth_dates_differ(a: str = "a", b: str = "b") -> Column:
    """Names that are no typo of each other (:func:`names_compatible`; both present) and
    birth dates that do not agree (different and not day/month swapped, or missing on
    either side): two people, e.g. a family sharing a phone (汪秀芳 / 汪阳明, one birth
    date blank)."""
    a_dob, b_dob = F.col(f"{a}.birth_date"), F.col(f"{b}.birth_date")
    swapped = day_month_swapped(a_dob, b_dob)
    dob_agrees = F.coalesce((a_dob == b_dob) | swapped, F.lit(False))
    return F.coalesce(~names_compatible(a, b), F.lit(False)) & ~dob_agrees


def birth_dates_conflict(a: str = "a", b: str = "b") -> Column:
    """Birth dates on both records that are no typo of each other: different, not day
    and month swapped, more than one edit apart as ``yyyyMMdd`` (2005-09-11 / 1987-06-30,
    a parent and a child; not 1987-06-30 / 1987-06-20)."""
    a_dob, b_dob = F.col(f"{a}.birth_date"), F.col(f"{b}.birth_date")
    swapped = day_month_swapped(a_dob, b_dob)
    edits = F.levenshtein(F.date_format(a_dob, "yyyyMMdd"), F.date_format(b_dob, "yyyyMMdd"))
    return F.coalesce((a_dob != b_dob) & ~swapped & (edits > 1), F.lit(False))


def names_compatible(a: str = "a", b: str = "b") -> Column:
    """The same name, the same characters in another order (``曾东涛`` / ``曾涛东``,
    ``ashleigh quilliam`` / ``quilliam ashleigh``) or within one edit (names of at least
    five characters). Null when a name is missing."""
    n_a, n_b = F.col(f"{a}.name"), F.col(f"{b}.name")

    def chars(c: Column) -> Column:
        return F.array_join(F.array_sort(F.split(c, "")), "")

    long_enough = F.least(F.length(n_a), F.length(n_b)) >= 5
    return (
        (n_a == n_b) | (chars(n_a) == chars(n_b)) | (long_enough & (F.levenshtein(n_a, n_b) <= 1))
    )


def names_close(conf: IdentityConf, a: str = "a", b: str = "b") -> Column:
    """Same name, a Han name's characters reordered (``周浩瑞`` / ``周瑞浩``, ``秀兰 陈`` /
    ``陈秀兰``), or (names of at least ``min_name_length`` characters) within
    ``name_max_edits`` edits, tokens in either order."""
    c = conf.junk.corroborate
    n_a, n_b = F.col(f"{a}.name"), F.col(f"{b}.name")
    s_a, s_b = F.col(f"{a}.name_sorted"), F.col(f"{b}.name_sorted")
    distance = F.least(F.levenshtein(n_a, n_b), F.levenshtein(s_a, s_b))
    long_enough = F.least(F.length(n_a), F.length(n_b)) >= c.min_name_length
    han = s_a.rlike(HAN_ONLY) & s_b.rlike(HAN_ONLY)
    reordered = han & (_chars(s_a) == _chars(s_b))
    return F.coalesce(
        (n_a == n_b) | reordered | (long_enough & (distance <= c.name_max_edits)), F.lit(False)
    )


def _chars(c: Column) -> Column:
    """The characters of ``c`` sorted."""
    return F.array_join(F.array_sort(F.split(c, "")), "")


def _shared_identifier_counts(pairs: DataFrame, crm_ids: DataFrame) -> DataFrame:
    """Output grain: one candidate pair (x, y); n_shared = distinct valid identifier values
    both records hold (the junk value itself counts as one)."""
    ce = crm_ids.filter(F.col("valid")).select("crm_id", "id_type", "key").distinct()
    p, q = ce.alias("p"), ce.alias("q")
    return (
        pairs.select("x", "y")
        .distinct()
        .join(p, F.col("p.crm_id") == F.col("x"))
        .join(
            q,
            (F.col("q.crm_id") == F.col("y"))
            & (F.col("q.id_type") == F.col("p.id_type"))
            & (F.col("q.key") == F.col("p.key")),
        )
        .groupBy("x", "y")
        .agg(F.count(F.lit(1)).alias("n_shared"))
    )


def junk_candidate_pairs(crm_ids: DataFrame, junk: DataFrame, conf: IdentityConf) -> DataFrame:
    """Pairs of records holding one junk value, in groups no larger than the cap
    (``junk.corroborate.max_group_size``). ``junk``: one (id_type, key) blocked only for
    being shared by too many records or by records the never-link rules keep apart.

    Output grain: one (id_type, key, x, y) with x < y; first_seen/last_seen of the pair.
    """
    holders = (
        crm_ids.filter(F.col("valid"))
        .join(junk, ["id_type", "key"], "left_semi")
        .groupBy("id_type", "key", "crm_id")
        .agg(F.min("seen").alias("first_seen"), F.max("seen").alias("last_seen"))
    )
    pairs = pairs_within(holders, ["id_type", "key"], conf.junk.corroborate.max_group_size)
    return pairs.select(
        "id_type",
        "key",
        F.col("a.crm_id").alias("x"),
        F.col("b.crm_id").alias("y"),
        F.greatest("a.first_seen", "b.first_seen").alias("first_seen"),
        F.greatest("a.last_seen", "b.last_seen").alias("last_seen"),
    )


def junk_value_pairs(crm_ids: DataFrame, junk: DataFrame, conf: IdentityConf) -> DataFrame:
    """Pairs of records holding one junk value (groups no larger than the cap).

    Output grain: one (x, y), x < y.
    """
    return junk_candidate_pairs(crm_ids, junk, conf).select("x", "y").distinct()


def corroborated_pairs(
    profiles: DataFrame,
    crm_ids: DataFrame,
    candidates: DataFrame,
    conf: IdentityConf,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Pairs of records sharing a junk value that corroborate each other and no
    never-link rule keeps apart.

    ``profiles``: :func:`crm_profiles`. ``candidates``: :func:`junk_candidate_pairs`.
    ``materialise(df, name)`` cuts the lineage of the corroborating pairs, which the
    chain check reads twice. Output grain: one (id_type, key, x, y), x < y; evidence
    (birth_date/name/identifier).
    """
    mat = materialise or (lambda df, _name: df)
    return _no_chains(mat(_corroborating(profiles, crm_ids, candidates, conf), "corroborating"))


def _corroborating(
    profiles: DataFrame, crm_ids: DataFrame, pairs: DataFrame, conf: IdentityConf
) -> DataFrame:
    """The ``pairs`` (:func:`junk_candidate_pairs`) that corroborate each other and no
    never-link rule keeps apart, with evidence and both records' valid ID cards."""
    a, b = profiles.alias("a"), profiles.alias("b")
    shared = _shared_identifier_counts(pairs, crm_ids)
    joined = (
        pairs.join(a, F.col("a.crm_id") == F.col("x"))
        .join(b, F.col("b.crm_id") == F.col("y"))
        .join(shared, ["x", "y"], "left")
    )
    same_dob = F.coalesce(F.col("a.birth_date") == F.col("b.birth_date"), F.lit(False))
    evidence = (
        F.when(F.coalesce(F.col("n_shared"), F.lit(0)) >= 2, "identifier")
        .when(same_dob, "birth_date")
        .when(names_close(conf) & ~_family_phone(conf), "name")
    )
    out = joined.select(
        "id_type", "key", "x", "y", "first_seen", "last_seen",
        evidence.alias("evidence"), never_link(conf).alias("veto"),
        F.col("a.id_card").alias("x_id_card"), F.col("b.id_card").alias("y_id_card"),
    )  # fmt: skip
    return out.filter(F.col("evidence").isNotNull() & ~F.col("veto"))


def _family_phone(conf: IdentityConf) -> Column:
    """A phone shared by a pair whose birth dates conflict: a parent and a child, even of
    one name (``never_link.shared_phone_conflicting_birth_dates``); their name
    corroborates nothing."""
    if not conf.never_link.shared_phone_conflicting_birth_dates:
        return F.lit(False)
    return (F.col("id_type") == "phone") & birth_dates_conflict()


def second_pass_junk_pairs(
    candidates: DataFrame, profiles: DataFrame, conf: IdentityConf
) -> DataFrame:
    """:func:`junk_candidate_pairs` less the pairs of a family phone (their birth dates
    conflict: :func:`_family_phone`): for the fuzzy pass, a value shared is evidence
    (``identifier_close``), and a parent and a child of one name share a name token too.
    Grain: one (id_type, key, x, y), x < y."""
    a, b = profiles.alias("a"), profiles.alias("b")
    joined = candidates.join(a, F.col("a.crm_id") == F.col("x")).join(
        b, F.col("b.crm_id") == F.col("y")
    )
    return joined.filter(~_family_phone(conf)).select(*[F.col(c) for c in candidates.columns])


def _no_chains(pairs: DataFrame) -> DataFrame:
    """Drop the pairs of a record whose partners (and itself) under one junk value hold
    more than one distinct valid ID card: it would chain two people together.

    Input/output grain: one (id_type, key, x, y).
    """
    # Each end of a pair with its own card and its partner's: one read of ``pairs``.
    ends = F.array(*[
        F.struct(F.col(r).alias("r"), F.col(f"{c}_id_card").alias("own"))
        for r in ("x", "y") for c in ("x", "y")
    ])  # fmt: skip
    cards = pairs.select("id_type", "key", F.explode(ends).alias("e")).select(
        "id_type", "key", F.col("e.r").alias("r"), F.col("e.own").alias("own")
    )
    chaining = (
        cards.filter(F.col("own").isNotNull())
        .distinct()
        .groupBy("id_type", "key", "r")
        .agg(F.count(F.lit(1)).alias("n_cards"))
        .filter(F.col("n_cards") > 1)
        .select("id_type", "key", "r")
    )
    bad_x = chaining.withColumnRenamed("r", "x")
    bad_y = chaining.withColumnRenamed("r", "y")
    return pairs.join(bad_x, ["id_type", "key", "x"], "left_anti").join(
        bad_y, ["id_type", "key", "y"], "left_anti"
    )


def corroborated_edges(
    profiles: DataFrame,
    crm_ids: DataFrame,
    candidates: DataFrame,
    conf: IdentityConf,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Edges between CRM records that corroborate each other under a junk value, and
    (``junk.corroborate.one_person``) those of :func:`one_person_pairs`.

    Output grain: one edge (crm x -> crm y) per junk identifier type, rule
    ``corroborated_<id_type>`` (confidence high) or ``one_person_<id_type>``; dated by
    the pair's versions; and (one_person) the :func:`one_person_value_edges`. ``candidates``: :func:`junk_candidate_pairs`.
    ``materialise(df, name)``: see :func:`corroborated_pairs`.
    """
    pairs = corroborated_pairs(profiles, crm_ids, candidates, conf, materialise)
    labelled = pairs.select(
        "id_type", "key", "x", "y", "first_seen", "last_seen",
        F.concat(F.lit("corroborated_"), F.col("id_type")).alias("rule"),
        F.lit("high").alias("confidence"),
    )  # fmt: skip
    value_edges = None
    if conf.junk.corroborate.one_person.enabled:
        one_person = one_person_pairs(profiles, candidates, pairs, conf)
        labelled = labelled.unionByName(one_person)
        value_edges = one_person_value_edges(candidates, pairs, one_person, conf)
    edges = (
        labelled.groupBy("x", "y", "rule", "confidence")
        .agg(F.min("first_seen").alias("first_seen"), F.max("last_seen").alias("last_seen"))
        .select(
            F.lit("crm").alias("src_source"),
            F.col("x").alias("src_key"),
            F.lit("crm").alias("dst_source"),
            F.col("y").alias("dst_key"),
            "rule",
            "confidence",
            "first_seen",
            "last_seen",
        )
    )
    return edges if value_edges is None else edges.unionByName(value_edges)


def one_person_pairs(
    profiles: DataFrame,
    candidates: DataFrame,
    corroborated: DataFrame,
    conf: IdentityConf,
) -> DataFrame:
    """A record holding a junk value (of ``one_person.id_types``) that corroborates none
    of its holders, when the holders that do corroborate are one person and nothing on
    the record disagrees with any of them (:func:`disagree`): the value is that person's
    (``ming.yu8468@126.com`` on four records of 何玉 and on one with no name or birth date).
    Two or more people among the corroborating holders, e.g. a family: no link.

    ``candidates``: :func:`junk_candidate_pairs`; ``corroborated``:
    :func:`corroborated_pairs`. Output grain: one (id_type, key, x, y),
    x < y: the uncorroborated record and the person's smallest crm_id; first_seen,
    last_seen, rule ``one_person_<id_type>``, confidence from the conf.
    """
    op = conf.junk.corroborate.one_person
    cand = candidates.filter(F.col("id_type").isin(*op.id_types))
    holders = _holders(cand)
    ends = _pair_ends(corroborated)
    person = _value_person(ends, corroborated)
    lone = (
        holders.join(ends, ["id_type", "key", "crm_id"], "left_anti")
        .join(person.select("id_type", "key", "y"), ["id_type", "key"])
        .withColumnRenamed("crm_id", "x")
    )
    a, b = profiles.alias("a"), profiles.alias("b")
    checks = (
        lone.join(ends.withColumnRenamed("crm_id", "m"), ["id_type", "key"])
        .join(a, F.col("a.crm_id") == F.col("x"))
        .join(b, F.col("b.crm_id") == F.col("m"))
        .groupBy("id_type", "key", "x", "y", "seen")
        .agg(F.max((never_link(conf) | disagree()).cast("int")).alias("bad"))
    )
    return checks.filter(F.col("bad") == 0).select(
        "id_type", "key", F.least("x", "y").alias("x"), F.greatest("x", "y").alias("y"),
        F.col("seen").alias("first_seen"),
        F.col("seen").alias("last_seen"),
        F.concat(F.lit("one_person_"), F.col("id_type")).alias("rule"),
        F.lit(op.confidence).alias("confidence"),
    )  # fmt: skip


def _holders(candidates: DataFrame) -> DataFrame:
    """Each junk value's holders (:func:`junk_candidate_pairs`' ends). Output grain: one
    (id_type, key, crm_id); seen (the latest date of a pair it is in)."""
    return candidates.select("id_type", "key", F.col("x").alias("crm_id"), "first_seen").unionByName(
        candidates.select("id_type", "key", F.col("y").alias("crm_id"), "first_seen")
    ).groupBy("id_type", "key", "crm_id").agg(F.max("first_seen").alias("seen"))  # fmt: skip


def _pair_ends(pairs: DataFrame) -> DataFrame:
    """The records of ``pairs`` (one (id_type, key, x, y)). Grain: one (id_type, key, crm_id)."""
    return pairs.select("id_type", "key", F.col("x").alias("crm_id")).unionByName(
        pairs.select("id_type", "key", F.col("y").alias("crm_id"))
    ).distinct()  # fmt: skip


def _value_person(ends: DataFrame, corroborated: DataFrame) -> DataFrame:
    """Junk values whose corroborating holders (``ends``: :func:`_pair_ends` of
    ``corroborated``) are one person: linked to each other, at least two. Output grain:
    one (id_type, key); y (the person's smallest crm_id), n (its records)."""
    members = ends.select(
        "id_type", "key", F.concat_ws("|", "id_type", "key").alias("nk"), "crm_id"
    )
    units = group_units(members.select("nk", "crm_id"), corroborated.select("x", "y"))
    return (
        members.join(units.filter(F.col("units") == 1), "nk")
        .groupBy("id_type", "key")
        .agg(F.min("crm_id").alias("y"), F.count(F.lit(1)).alias("n"))
        .filter(F.col("n") >= 2)
    )


# The identifier types whose value node also stands for the till's side (a phone keyed
# at the till, a member card swiped): jobs.identity.graph.NODE_SOURCE.
TILL_NODES = {"phone": "pos_phone", "card": "pos_card"}


def one_person_value_edges(
    candidates: DataFrame, corroborated: DataFrame, one_person: DataFrame, conf: IdentityConf
) -> DataFrame:
    """A junk phone or member card every CRM holder of which is one person's record (it
    corroborates the others, or links as :func:`one_person_pairs`): the value is that
    person's, and the till's orders keyed with it are too (13592304770 on five records of
    赵亮 and on his orders with no card). One edge from the value's node to the person's
    smallest record; a value with a holder left apart (a family's phone) gets none.

    Inputs: :func:`junk_candidate_pairs`, :func:`corroborated_pairs`,
    :func:`one_person_pairs`. Output grain: one edge (pos_phone or pos_card node ->
    crm y), rule ``one_person_value``, confidence from ``one_person``, dated by the
    latest pair of the value's holders.
    """
    types = [t for t in conf.junk.corroborate.one_person.id_types if t in TILL_NODES]
    cand = candidates.filter(F.col("id_type").isin(*types))
    holders = _holders(cand)
    ends = _pair_ends(corroborated.filter(F.col("id_type").isin(*types)))
    linked = ends.unionByName(_pair_ends(one_person.select("id_type", "key", "x", "y")))
    left_apart = holders.join(linked, ["id_type", "key", "crm_id"], "left_anti")
    person = _value_person(ends, corroborated).join(
        left_apart.select("id_type", "key"), ["id_type", "key"], "left_anti"
    )
    seen = holders.groupBy("id_type", "key").agg(F.max("seen").alias("seen"))
    node = F.lit(None).cast("string")
    for id_type, source in TILL_NODES.items():
        node = F.when(F.col("id_type") == id_type, source).otherwise(node)
    return person.join(seen, ["id_type", "key"]).select(
        node.alias("src_source"),
        F.col("key").alias("src_key"),
        F.lit("crm").alias("dst_source"),
        F.col("y").alias("dst_key"),
        F.lit("one_person_value").alias("rule"),
        F.lit(conf.junk.corroborate.one_person.confidence).alias("confidence"),
        F.col("seen").alias("first_seen"),
        F.col("seen").alias("last_seen"),
    )


def disagree(a: str = "a", b: str = "b") -> Column:
    """A name (no typo of the other: :func:`names_compatible`), birth date (different and
    not day/month swapped) or gender present on both records that differs."""
    a_dob, b_dob = F.col(f"{a}.birth_date"), F.col(f"{b}.birth_date")
    swapped = day_month_swapped(a_dob, b_dob)
    return (
        F.coalesce(~names_compatible(a, b), F.lit(False))
        | F.coalesce((a_dob != b_dob) & ~swapped, F.lit(False))
        | F.coalesce(F.col(f"{a}.gender") != F.col(f"{b}.gender"), F.lit(False))
    )


def pairs_within(members: DataFrame, group: list[str], max_size: int | None = None) -> DataFrame:
    """Every pair of members of one group, read once: the group's members gathered in a
    list and exploded twice (groups are small), not a self-join that evaluates
    ``members`` (and all it is computed from) twice. A list, not a set: on Sail a
    distinct aggregate over millions of groups costs ten times more.

    Input grain: one member of a group (the ``group`` columns, crm_id and any other
    columns). Groups of more than ``max_size`` members (when given) make no pair.
    Output grain: one (group, a, b) with a.crm_id < b.crm_id; ``a`` and ``b`` are
    structs of the members' other columns.
    """
    rest = [c for c in members.columns if c not in group]
    listed = members.groupBy(*group).agg(F.collect_list(F.struct(*rest)).alias("m"))
    if max_size is not None:
        listed = listed.filter(F.size("m") <= max_size)
    return (
        listed.filter(F.size("m") >= 2)
        .select(*group, "m", F.explode("m").alias("a"))
        .select(*group, "a", F.explode("m").alias("b"))
        .filter(F.col("a.crm_id") < F.col("b.crm_id"))
    )


def group_units(members: DataFrame, links: DataFrame) -> DataFrame:
    """How many people each group's records are at most, counting records linked to each
    other (``links``: one (x, y) pair of CRM records) as one.

    Each record takes the smallest id among itself and the group's records linked to it:
    records sharing a value (all linked to each other) get one label; a chain (a-b, b-c,
    a and c not linked) counts as more people, never as fewer.
    Input ``members``: one (nk, crm_id). Output grain: one nk with ``units``.
    """
    both = links.select("x", "y").unionByName(
        links.select(F.col("y").alias("x"), F.col("x").alias("y"))
    )
    neighbours = (
        both.join(members.select(F.col("crm_id").alias("x"), "nk"), "x")
        .join(members.select(F.col("crm_id").alias("y"), F.col("nk").alias("nk_y")), "y")
        .filter(F.col("nk") == F.col("nk_y"))
        .select("nk", F.col("x").alias("crm_id"), F.col("y").alias("label"))
    )
    label = (
        members.select("nk", "crm_id", F.col("crm_id").alias("label"))
        .unionByName(neighbours)
        .groupBy("nk", "crm_id")
        .agg(F.min("label").alias("label"))
    )
    per_label = label.groupBy("nk", "label").agg(F.count(F.lit(1)).alias("n"))
    return per_label.groupBy("nk").agg(F.count(F.lit(1)).alias("units"))


def conflicting_values(
    crm_ids: DataFrame,
    profiles: DataFrame,
    conf: IdentityConf,
    materialise: Callable[[DataFrame, str], DataFrame] | None = None,
) -> DataFrame:
    """Identifier values (not already shared by too many) held by two records that the
    never-link rules keep apart, e.g. a family phone keyed by two people with different
    ID cards. Such a value links nothing by itself; its holders that corroborate each
    other are linked pair by pair (:func:`corroborated_edges`).

    ``materialise`` (as in jobs.identity.graph.build_graph): the holders of values held
    by two records or more, read by both sides of the pairing, are written once.
    Output grain: one (id_type, key); value (normalised raw), reason ``never_link``.
    """
    holders = (
        crm_ids.filter(F.col("valid"))
        .groupBy("id_type", "key", "crm_id")
        .agg(F.max("value").alias("value"))
    )
    sizes = holders.groupBy("id_type", "key").agg(F.count(F.lit(1)).alias("n"))
    cap = conf.junk.max_crm_records_per_value
    grp = holders.join(
        sizes.filter((F.col("n") >= 2) & (F.col("n") <= cap)).select("id_type", "key"),
        ["id_type", "key"],
        "left_semi",
    )
    if materialise is not None:
        # At 1M members each read grouped 3.7M identifiers again: 3 s of the 11 s.
        grp = materialise(grp, "conflict_holders")
    g1, g2 = grp.alias("g1"), grp.alias("g2")
    pairs = g1.join(
        g2,
        (F.col("g1.id_type") == F.col("g2.id_type"))
        & (F.col("g1.key") == F.col("g2.key"))
        & (F.col("g1.crm_id") < F.col("g2.crm_id")),
    ).select(
        F.col("g1.id_type").alias("id_type"),
        F.col("g1.key").alias("key"),
        F.col("g1.value").alias("value"),
        F.col("g1.crm_id").alias("x"),
        F.col("g2.crm_id").alias("y"),
    )
    a, b = profiles.alias("a"), profiles.alias("b")
    veto = never_link(conf)
    if conf.never_link.shared_phone_different_name_and_birth_date:
        veto = veto | ((F.col("id_type") == "phone") & names_and_birth_dates_differ())
    veto = veto | _family_phone(conf)
    return (
        pairs.join(a, F.col("a.crm_id") == F.col("x"))
        .join(b, F.col("b.crm_id") == F.col("y"))
        .filter(veto)
        .groupBy("id_type", "key")
        .agg(F.max("value").alias("value"))
        .select("id_type", "key", "value", F.lit("never_link").alias("reason"))
    )
