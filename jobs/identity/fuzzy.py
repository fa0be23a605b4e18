"""Fuzzy second pass: CRM records sharing no identifier whose fields agree closely enough
that a typo, not another person, explains the differences (``carbone`` vs ``carbne``,
``quilliam ashleigh`` vs ``ashleigh quilliam``, card ``4562990`` vs ``4562890``, birth
date ``1980-03-04`` vs ``1980-04-03``).

Candidates come from blocking keys (:func:`block_keys`), in blocks of at most
``fuzzy.max_block_size`` records. Each candidate pair gets comparison levels
(:func:`compare`); the first rule of :data:`RULES` it meets (and that conf/identity.yaml
enables) names its edge. Exact name + birth date + city matches are the ``name_dob_city``
rule's (graph.py); the never-link rules veto a pair here too.

Comparisons use Spark built-ins only (``levenshtein``, higher-order array functions), so
the pass runs on Sail and JVM Spark alike. Pure transforms: DataFrames in, DataFrames out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.columns import any_true
from jobs.identity import normalize as N
from jobs.identity.conf import FuzzyConf, IdentityConf
from jobs.identity.corroborate import never_link, pairs_within

# Han characters only (Java and Rust regex engines both accept a literal range).
_HAN_ONLY = "^[\u3400-\u9fff]+$"
# Rule names in the order a pair is labelled (first match wins).
RULES = (
    "fuzzy_name_dob_city",
    "fuzzy_name_dob",
    "fuzzy_name_dob_province",
    "fuzzy_dob_city_token",
    "fuzzy_identifier_token",
    "fuzzy_id_card_typo",
    "fuzzy_agreements",
)


def _tokens(name: Column) -> Column:
    """Lower-cased name tokens (split on spaces, ideographic spaces, dots)."""
    cleaned = F.lower(F.trim(N.fold_text(F.coalesce(name, F.lit("")))))
    return F.filter(F.split(cleaned, r"[\s\u3000·.]+"), lambda t: F.length(t) > 0)


def fuzzy_profiles(latest: DataFrame, profiles: DataFrame, crm_ids: DataFrame) -> DataFrame:
    """What the fuzzy pass compares, from each record's latest version.

    Inputs: ``latest`` one CRM record's latest version; ``profiles``
    (:func:`jobs.identity.corroborate.crm_profiles`); ``crm_ids``
    (:func:`jobs.identity.graph.crm_identifiers`). Output grain: one crm_id; the profile
    columns plus seen, first/last (first and last name token), n_tokens, city_key,
    province_key, card (member card), id_raw (cleaned ID card, valid or not: an invalid
    one comes from the version's ``_field_issues``, as ingest nulled it), id_valid,
    phone (canonical).
    """
    value = {t: F.when(F.col("id_type") == t, F.col("value")) for t in ("card", "id_card", "phone")}
    latest_ids = (
        crm_ids.filter(F.col("is_latest"))
        .groupBy("crm_id")
        .agg(
            F.max(value["card"]).alias("card"),
            F.max(value["id_card"]).alias("id_raw"),
            F.max(value["phone"]).alias("phone"),
            any_true(F.when(F.col("id_type") == "id_card", F.col("valid"))).alias("id_valid"),
        )
    )
    tokens = _tokens(F.col("name"))
    own = latest.select(
        F.col("crm_key").alias("crm_id"),
        F.col("_business_date").alias("seen"),
        F.when(F.size(tokens) > 0, F.element_at(tokens, 1)).alias("first"),
        F.when(F.size(tokens) > 0, F.element_at(tokens, -1)).alias("last"),
        F.size(tokens).alias("n_tokens"),
        N.norm_city(F.col("city")).alias("city_key"),
        N.norm_city(F.col("province")).alias("province_key"),
        _invalid_id_text().alias("id_invalid"),
    )
    return (
        profiles.join(own, "crm_id")
        .join(latest_ids, "crm_id", "left")
        .withColumn("id_raw", F.coalesce("id_raw", "id_invalid"))
        .withColumn(
            "id_valid", F.coalesce("id_valid", F.when(F.col("id_invalid").isNotNull(), False))
        )
        .drop("id_invalid")
    )


def _invalid_id_text() -> Column:
    """The ID card text ingest nulled for failing its checks (bronze ``_field_issues``),
    cleaned: never a link by itself, but one edit from a valid one is a typo."""
    issues = F.filter(F.col("_field_issues"), lambda i: i["field"] == "id_card_no")
    text = F.array_join(F.transform(issues, lambda i: i["value"]), "")
    return N.clean_id_card(F.when(F.length(text) > 0, text))


def _masked(c: Column) -> Column:
    """``c`` once per character with that character masked: texts one substitution
    apart share one masked text."""
    return F.transform(
        F.sequence(F.lit(1), F.length(c)),
        lambda i: F.concat(c.substr(F.lit(1), i - 1), F.lit("_"), c.substr(i + 1, F.lit(64))),
    )


def _pair_sorted(c: Column) -> Column:
    """``c`` once per pair of neighbours with the two put in order: texts one adjacent
    transposition apart (``8870`` / ``8780``) share one such text."""
    return F.transform(
        F.sequence(F.lit(1), F.greatest(F.length(c) - 1, F.lit(1))),
        lambda i: F.concat(
            c.substr(F.lit(1), i - 1),
            F.least(c.substr(i, F.lit(1)), c.substr(i + 1, F.lit(1))),
            F.greatest(c.substr(i, F.lit(1)), c.substr(i + 1, F.lit(1))),
            c.substr(i + 2, F.lit(64)),
        ),
    )


def _sorted_chars(c: Column) -> Column:
    """The characters of ``c`` sorted: texts one transposition apart give the same."""
    return F.array_join(F.array_sort(F.split(c, "")), "")


# Columns :func:`block_keys` adds before the keys are made: each text's characters sorted
# once, though two keys read it (an expression per key was evaluated per key).
_SORTED = {c: f"_sorted_{c}" for c in ("name_sorted", "card", "id_raw")}


def _keys(conf: FuzzyConf) -> list[tuple[str, Column, Column]]:
    """(tag, key, when it is made) of each single blocking key, over :func:`block_keys`'
    input with the :data:`_SORTED` columns."""
    b = conf.blocking
    dob, city = F.col("birth_date").cast("string"), F.col("city_key")
    phone_prefix = F.substring(F.col("phone"), 1, b.phone_prefix_length)
    out: list[tuple[str, Column, Column]] = [
        ("dc", F.concat_ws("|", dob, city), _all_present([dob, city])),
        ("pc", F.concat_ws("|", phone_prefix, city), _all_present([F.col("phone"), city])),
        # the name's characters sorted, no city: ``敏丹 郑`` / ``郑敏丹`` with only a
        # province (a common name's block is over the size cap and makes no pairs)
        ("n", F.col(_SORTED["name_sorted"]), _all_present([F.col("name_sorted")])),
        # city + the name's characters sorted: ``梅 王`` / ``王梅``, ``周瑞浩`` / ``周浩瑞``
        ("cn", F.concat_ws("|", city, F.col(_SORTED["name_sorted"])),
         _all_present([city, F.col("name_sorted")])),
    ]  # fmt: skip
    # A name token's keys are tagged without its side (first or last token), and the last
    # token's key is made only where it differs from the first's: a one-token name (most
    # Han names) sits in one block, not in two with the same members, and a swapped name
    # (``quilliam ashleigh`` / ``ashleigh quilliam``) shares a block.
    prefix = {side: F.substring(F.col(side), 1, b.name_prefix_length) for side in _SIDES}
    for side in _SIDES:
        once = _token_key_needed(side, prefix)
        out.append(("dt", F.concat_ws("|", dob, prefix[side]), once & _all_present([dob])))
        out.append(("ct", F.concat_ws("|", city, prefix[side]), once & _all_present([city])))
    initial = _initials()
    for id_col in ("card", "id_raw"):
        # Member cards are issued in sequence: a card alone would block ten neighbours.
        for side in _SIDES:
            key = F.concat_ws("|", F.col(_SORTED[id_col]), initial[side])
            present = _all_present([F.col(id_col)])
            out.append((f"s{id_col}", key, _token_key_needed(side, initial) & present))
    return out


_SIDES = ("first", "last")


def _initials() -> dict[str, Column]:
    return {side: F.substring(F.col(side), 1, 1) for side in _SIDES}


def _token_key_needed(side: str, part: dict[str, Column]) -> Column:
    """Whether a key made of ``part[side]`` (a name token's prefix) is made: the token is
    there and, for the last token, its prefix differs from the first token's."""
    there = F.col(side).isNotNull()
    if side == "first":
        return there
    return there & (F.col("first").isNull() | (part["last"] != part["first"]))


def block_keys(fp: DataFrame, conf: IdentityConf, wanted: DataFrame | None = None) -> DataFrame:
    """Blocking keys of each record: birth date + city, phone prefix + city, the sorted
    name, city + the name's characters sorted, birth date or city + a name token's first
    letters, a member card with one character masked (+ a name token's initial or the
    birth year), an ID / member card with its characters sorted (+ a name token's
    initial), an ID card alone with one character masked or two neighbours in order.
    Input: :func:`fuzzy_profiles`.

    Output grain: one (crm_id, block); a record sits in several blocks. ``wanted`` (one
    ``block``, broadcast: the keys of a night's touched records): only those blocks' rows.
    ``fp`` is read once per key family: give a written frame, not a long plan.
    """
    sorted_texts = [_sorted_chars(F.col(c)).alias(alias) for c, alias in _SORTED.items()]
    fp = fp.select("*", *sorted_texts)
    single = [F.when(when, F.concat(F.lit(tag + "|"), key)) for tag, key, when in _keys(conf.fuzzy)]
    # A card or ID with one character masked, with a name token's initial or the year
    # of birth (member cards are issued in sequence: alone, each would block ten).
    # (The two tokens' initials share a tag, the last token's made where it differs.)
    initial = _initials()
    suffixes = [("t", initial[side], _token_key_needed(side, initial)) for side in _SIDES]
    suffixes.append(("year", F.year("birth_date").cast("string"), F.col("birth_date").isNotNull()))
    masked = [
        F.transform(
            F.coalesce(F.when(needed, _masked(F.col("card"))), F.array().cast("array<string>")),
            _tagged(f"mcard{tag}|", suffix),
        )
        for tag, suffix, needed in suffixes
    ]
    # An ID card alone (region and birth date inside make neighbours rare), one character
    # masked or two neighbours put in order: a record with no name or birth date too.
    id_alone = [
        F.transform(keys(F.col("id_raw")), _tagged(f"{tag}|", F.lit("")))
        for tag, keys in (("mid", _masked), ("tid", _pair_sorted))
    ]
    # Each family's keys made distinct within its own row (``fp`` holds one row per
    # record), not by a DISTINCT over every record's keys (at 1M members 48M rows to
    # group, a third of the blocking's time); tags differ between families, so no key
    # repeats across them. One explode per family, of the records holding its text:
    # one array of all a record's keys cost 8.6 s at 1M members, these 7.1 s.
    families = [
        (fp, F.array(*single)),
        (fp.filter(F.col("card").isNotNull()), F.concat(*masked)),
        *[(fp.filter(F.col("id_raw").isNotNull()), keys) for keys in id_alone],
    ]
    rows = None
    for records, keys in families:
        part = records.select("crm_id", F.explode(F.array_distinct(keys)).alias("block"))
        rows = part if rows is None else rows.unionByName(part)
    assert rows is not None
    rows = rows.filter(F.col("block").isNotNull())
    if wanted is not None:
        # A night wants the blocks of a few thousand touched records.
        rows = rows.join(F.broadcast(wanted), "block", "left_semi")
    return rows


def _tagged(tag: str, suffix: Column) -> Callable[[Column], Column]:
    """``tag`` + masked text + ``suffix`` (a function for ``F.transform``)."""
    return lambda m: F.concat(F.lit(tag), m, suffix)


def _all_present(parts: list[Column]) -> Column:
    ok = F.lit(True)
    for p in parts:
        ok = ok & p.isNotNull()
    return ok


def candidate_pairs(fp: DataFrame, conf: IdentityConf, extra: DataFrame) -> DataFrame:
    """Pairs of records sharing a block of at most ``fuzzy.max_block_size`` records, plus
    ``extra`` pairs (one (x, y), x < y: records sharing a junk value).

    Output grain: one (x, y), x < y; shares_junk (the pair came from ``extra``).
    """
    # Grouped by a 64-bit hash of the key, not its text: at 1M members 48M keys in 35M
    # blocks, most of one record. Two keys sharing a hash (about one chance in 10^5 at
    # that size) only make one bigger block; the comparisons still decide every pair.
    hashed = block_keys(fp, conf).select("crm_id", F.xxhash64("block").alias("block"))
    in_blocks = pairs_within(hashed, ["block"], conf.fuzzy.max_block_size)
    blocked = in_blocks.select(
        F.col("a.crm_id").alias("x"), F.col("b.crm_id").alias("y"), F.lit(False).alias("j")
    )
    both = blocked.unionByName(extra.select("x", "y", F.lit(True).alias("j")))
    return both.groupBy("x", "y").agg(any_true(F.col("j")).alias("shares_junk"))


def _one_edit(a: Column, b: Column, distance: Column | None = None) -> Column:
    """Different texts one substitution, insertion, deletion or adjacent transposition
    apart (Damerau: ``4562990`` / ``4562890``, ``8478623`` / ``8478632``).

    A transposition is ``a`` with two neighbours swapped equal to ``b``: two texts two
    substitutions apart that merely hold such a pair somewhere (``13000079190`` /
    ``13000791900``) are not one edit apart. ``distance``: ``levenshtein(a, b)`` when the
    caller has it already. The swap is looked for only in texts of equal length two
    edits apart (a CASE evaluates its branch for those rows only): a higher-order
    function over every pair cost most of the comparisons' time.
    """
    d = F.levenshtein(a, b) if distance is None else distance
    maybe_swap = (F.length(a) == F.length(b)) & (d == 2)
    transposed = F.when(maybe_swap, _one_swap(a, b)).otherwise(F.lit(False))
    return F.coalesce((a != b) & ((d == 1) | transposed), F.lit(False))


def _one_swap(a: Column, b: Column) -> Column:
    """``a`` with two different neighbours swapped equals ``b``."""
    n = F.length(a)
    return F.exists(
        F.sequence(F.lit(1), F.greatest(n - 1, F.lit(1))),
        lambda i: (
            (a.substr(i, F.lit(1)) != a.substr(i + 1, F.lit(1)))
            & (
                F.concat(
                    a.substr(F.lit(1), i - 1),
                    a.substr(i + 1, F.lit(1)),
                    a.substr(i, F.lit(1)),
                    a.substr(i + 2, n),
                )
                == b
            )
        ),
    )


def _record_features(fp: DataFrame) -> DataFrame:
    """``fp`` (:func:`fuzzy_profiles`) with what :func:`compare` derives from one record
    computed once per record instead of once per pair: name_han and sorted_han (the name,
    the sorted name, Han characters only), sorted_chars (the sorted name's characters
    sorted), dob_text (``yyyyMMdd``). Grain: one crm_id."""
    return fp.select(
        "*",
        F.col("name").rlike(_HAN_ONLY).alias("name_han"),
        F.col("name_sorted").rlike(_HAN_ONLY).alias("sorted_han"),
        _sorted_chars(F.col("name_sorted")).alias("sorted_chars"),
        F.date_format(F.col("birth_date"), "yyyyMMdd").alias("dob_text"),
    )


# The texts compared for being one edit apart (:func:`_one_edit`).
_TYPO_FIELDS = ("card", "phone", "id_raw", "dob_text")


def _pair_distances(conf: IdentityConf) -> list[Column]:
    """First stage of :func:`compare`, over a pair joined with :func:`_record_features` as
    ``a`` and ``b``: each distance computed once (name_edits, name_shortest, han, and
    ``<field>_edits`` of :data:`_TYPO_FIELDS` with both texts as ``a_<field>`` /
    ``b_<field>``), and the levels that need nothing else."""
    f = conf.fuzzy
    n_a, n_b = F.col("a.name"), F.col("b.name")
    a_dob, b_dob = F.col("a.birth_date"), F.col("b.birth_date")
    dob_swapped = (
        (F.year(a_dob) == F.year(b_dob))
        & (F.month(a_dob) == F.dayofmonth(b_dob))
        & (F.dayofmonth(a_dob) == F.month(b_dob))
    )
    typo_texts = [
        F.col(f"{side}.{c}").alias(f"{side}_{c}") for c in _TYPO_FIELDS for side in ("a", "b")
    ]

    def valid(side: str) -> Column:
        return F.coalesce(F.col(f"{side}.id_valid"), F.lit(False))

    return [
        "x",
        "y",
        "shares_junk",
        F.greatest("a.seen", "b.seen").alias("seen"),
        F.least(
            F.levenshtein(n_a, n_b), F.levenshtein(F.col("a.name_sorted"), F.col("b.name_sorted"))
        ).alias("name_edits"),
        F.least(F.length(n_a), F.length(n_b)).alias("name_shortest"),
        (F.col("a.name_han") & F.col("b.name_han")).alias("han"),
        _name_same().alias("name_same"),
        _token_close(f).alias("token_close"),
        F.coalesce(a_dob == b_dob, F.lit(False)).alias("dob_same"),
        dob_swapped.alias("dob_swapped"),
        F.coalesce(F.col("a.city_key") == F.col("b.city_key"), F.lit(False)).alias("city_same"),
        _city_close(f).alias("city_close"),
        F.coalesce(F.col("a.province_key") == F.col("b.province_key"), F.lit(False)).alias(
            "province_same"
        ),
        (valid("a") & valid("b")).alias("both_ids_valid"),
        *[
            F.levenshtein(F.col(f"a.{c}"), F.col(f"b.{c}")).alias(f"{c}_edits")
            for c in _TYPO_FIELDS
        ],
        *typo_texts,
        never_link(conf).alias("veto"),
        *[
            (F.col(f"a.{c}").isNull() | F.col(f"b.{c}").isNull()).alias(f"{c}_missing")
            for c in ("name", "birth_date", "city_key", "province_key")
        ],
    ]


def _name_close(conf: FuzzyConf, max_edits: int) -> Column:
    """Names (latin of at least ``name_min_length`` characters, or Han of at least
    ``han_min_length``) within ``max_edits`` character edits (Han: ``han_max_edits``),
    tokens in either order. Over :func:`_pair_distances`' columns."""
    c = conf.comparisons
    edits, shortest, han = F.col("name_edits"), F.col("name_shortest"), F.col("han")
    latin_ok = ~han & (shortest >= c.name_min_length) & (edits <= max_edits)
    han_ok = han & (shortest >= c.han_min_length) & (edits <= min(max_edits, c.han_max_edits))
    return F.coalesce(latin_ok | han_ok, F.lit(False))


def _name_same() -> Column:
    """Equal names however short, the same tokens in another order (``ashleigh quilliam``
    / ``quilliam ashleigh``, ``梅 王`` / ``王梅``) or a Han name's characters reordered
    (``王成强`` / ``王强成``, ``梅 王`` / ``王梅``). Over :func:`_record_features` as a, b."""
    han = F.col("a.sorted_han") & F.col("b.sorted_han")
    same = (
        (F.col("a.name") == F.col("b.name"))
        | (F.col("a.name_sorted") == F.col("b.name_sorted"))
        | (han & (F.col("a.sorted_chars") == F.col("b.sorted_chars")))
    )
    return F.coalesce(same, F.lit(False))


def _token_close(conf: FuzzyConf) -> Column:
    """Latin names (one of two or more tokens) with a first or last token (of at least
    ``token_min_length`` characters) within ``token_max_edits`` edits of one of the
    other's, either order."""
    c = conf.comparisons
    dists = []
    for x in ("first", "last"):
        for y in ("first", "last"):
            ta, tb = F.col(f"a.{x}"), F.col(f"b.{y}")
            long_enough = F.least(F.length(ta), F.length(tb)) >= c.token_min_length
            dists.append(F.when(long_enough, F.levenshtein(ta, tb)))
    multi = (F.col("a.n_tokens") >= 2) | (F.col("b.n_tokens") >= 2)
    return F.coalesce(multi & (F.least(*dists) <= c.token_max_edits), F.lit(False))


def _city_close(conf: FuzzyConf) -> Column:
    c = conf.comparisons
    a, b = F.col("a.city_key"), F.col("b.city_key")
    typo = (F.least(F.length(a), F.length(b)) >= c.city_min_length) & (
        F.levenshtein(a, b) <= c.city_max_edits
    )
    return F.coalesce((a == b) | typo, F.lit(False))


def _typo(field: str) -> Column:
    """The pair's ``field`` texts one edit apart (over :func:`_pair_distances`' columns)."""
    return _one_edit(F.col(f"a_{field}"), F.col(f"b_{field}"), F.col(f"{field}_edits"))


def _levels(conf: IdentityConf) -> list[Column]:
    """Second stage of :func:`compare`: the levels derived from :func:`_pair_distances`."""
    c = conf.fuzzy.comparisons
    # ID cards one edit apart of which at least one fails its checksum (two valid ones
    # are two people: never-link).
    id_card_typo = _typo("id_raw") & ~F.col("both_ids_valid")
    # A member card or phone one edit apart (a family's shared phone is equal, not one
    # edit apart), or such an ID card.
    identifier_typo = _typo("card") | _typo("phone") | id_card_typo
    dob_close = F.coalesce(
        F.col("dob_same") | F.col("dob_swapped") | _typo("dob_text"), F.lit(False)
    )
    return [
        "x",
        "y",
        "seen",
        _name_close(conf.fuzzy, c.name_close_edits).alias("name_close"),
        (_name_close(conf.fuzzy, c.name_near_edits) | F.col("name_same")).alias("name_near"),
        "token_close",
        "name_same",
        "dob_same",
        dob_close.alias("dob_close"),
        "city_same",
        "city_close",
        "province_same",
        identifier_typo.alias("identifier_typo"),
        id_card_typo.alias("id_card_typo"),
        # or a shared junk value (held by too many records to link by itself)
        (identifier_typo | F.col("shares_junk")).alias("identifier_close"),
        "veto",
        *[f"{c}_missing" for c in ("name", "birth_date", "city_key", "province_key")],
    ]


def compare(pairs: DataFrame, fp: DataFrame, conf: IdentityConf) -> DataFrame:
    """Comparison levels of each candidate pair.

    Inputs: :func:`candidate_pairs`; :func:`fuzzy_profiles`. Output grain: one (x, y);
    seen (the later record's date), booleans name_same (:func:`_name_same`), name_close (within
    ``comparisons.name_close_edits``), name_near (within ``comparisons.name_near_edits``,
    or name_same),
    token_close, dob_same, dob_close (same, day and month swapped, or one edit apart as
    ``yyyyMMdd``), city_same, city_close, province_same,
    identifier_typo, id_card_typo, identifier_close (a typo or a shared junk value), veto
    (never-link),
    and name/birth_date/city_key/province_key_missing (null on either side).

    Two stages: every distance once per pair (:func:`_pair_distances`), then the levels
    from them (:func:`_levels`).
    """
    records = _record_features(fp)
    return compare_records(pairs, records, records, conf)


def compare_records(
    pairs: DataFrame, x_records: DataFrame, y_records: DataFrame, conf: IdentityConf
) -> DataFrame:
    """:func:`compare` with each end's :func:`_record_features` given: ``x_records`` must
    hold every x of ``pairs`` and ``y_records`` every y (one crm_id each)."""
    a, b = x_records.alias("a"), y_records.alias("b")
    joined = pairs.join(a, F.col("a.crm_id") == F.col("x")).join(b, F.col("b.crm_id") == F.col("y"))
    return joined.select(*_pair_distances(conf)).select(*_levels(conf))


def rule_conditions(conf: FuzzyConf) -> dict[str, Column]:
    """Each enabled rule's condition over :func:`compare`'s columns, in :data:`RULES` order."""
    c = {n: F.col(n) for n in ("name_same", "name_close", "name_near", "token_close", "dob_same",
                               "dob_close", "city_same", "city_close", "province_same",
                               "identifier_close", "identifier_typo",
                               "id_card_typo")}  # fmt: skip
    name_agrees = c["name_near"] | c["token_close"]
    agreements = name_agrees.cast("int") + sum(
        F.col(n).cast("int") for n in ("dob_close", "city_close", "identifier_close")
    )
    conditions = {
        "fuzzy_name_dob_city": c["name_close"] & c["dob_same"] & c["city_same"],
        "fuzzy_name_dob": c["name_close"] & c["dob_close"] & c["city_close"],
        "fuzzy_name_dob_province": c["name_close"] & c["dob_same"] & c["province_same"],
        "fuzzy_dob_city_token": c["dob_close"] & c["city_close"] & c["token_close"],
        "fuzzy_identifier_token": c["identifier_close"]
        & (c["token_close"] | c["name_same"])
        & (c["province_same"] | c["dob_close"]),
        "fuzzy_id_card_typo": c["id_card_typo"]
        & _agrees_somewhere(name_agrees)
        & ~_disagrees_anywhere(name_agrees),
        "fuzzy_agreements": (agreements >= conf.rules.agreements.min_agreements)
        & (c["identifier_typo"] | F.lit(not conf.rules.agreements.require_identifier)),
    }
    return {name: conditions[name] for name in RULES if conf.rules.get(name).enabled}


def _agrees_somewhere(name_agrees: Column) -> Column:
    """Name (near or a token close), birth date (close), city (close) or province agree."""
    return name_agrees | F.col("dob_close") | F.col("city_close") | F.col("province_same")


def _disagrees_anywhere(name_agrees: Column) -> Column:
    """A name, birth date, city or province present on both records that does not agree."""
    return (
        (~F.col("name_missing") & ~name_agrees)
        | (~F.col("birth_date_missing") & ~F.col("dob_close"))
        | (~F.col("city_key_missing") & ~F.col("city_close"))
        | (~F.col("province_key_missing") & ~F.col("province_same"))
    )


def compared_pairs(
    latest: DataFrame,
    profiles: DataFrame,
    crm_ids: DataFrame,
    shared_pairs: DataFrame,
    junk_pairs: DataFrame,
    conf: IdentityConf,
    materialise: Callable[[DataFrame, str], DataFrame],
) -> DataFrame:
    """:func:`compare` of the candidate pairs not already sharing a value node
    (``shared_pairs``: one (x, y), x < y). ``junk_pairs``: one (x, y), x < y, of records
    sharing a junk value. ``materialise(df, name)`` cuts the lineage of the profiles
    (read by the blocking and by both sides of each pair) and writes the candidate
    pairs and the shared pairs, then the comparisons (``fuzzy_compared``,
    :func:`compare_in_slices`).
    Output grain: one (x, y), x < y (:func:`compare`'s columns)."""
    fp = materialise(fuzzy_profiles(latest, profiles, crm_ids), "fuzzy_profiles")
    # Each written on its own, and the shared pairs dropped slice by slice: in one query
    # with the comparisons, the blocks' pair lists and the comparisons' joins held memory
    # together (1M members: 7.4 GB of RSS); with the anti-join of all candidate pairs in
    # it, a 5M-member full run failed to allocate a hash join's input there under a
    # 5 GiB and an 8 GiB pool (96.7M candidate pairs, 410k shared).
    candidates = materialise(candidate_pairs(fp, conf, junk_pairs), "fuzzy_pairs")
    shared = materialise(shared_pairs, "fuzzy_shared")
    return compare_in_slices(candidates, shared, fp, conf, materialise)


def pair_slices(pairs: DataFrame, slices: int, column: str = "x") -> Iterator[DataFrame]:
    """``pairs`` (one (x, y)) cut in ``slices`` parts by a hash of x (or of ``column``, the
    same hash for the same value): each pair in one."""
    for i in range(slices):
        yield pairs.filter(F.pmod(F.xxhash64(column), F.lit(slices)) == i)


def compare_in_slices(
    pairs: DataFrame, shared: DataFrame, fp: DataFrame, conf: IdentityConf, materialise: Callable
) -> DataFrame:
    """:func:`compare` of ``pairs`` not in ``shared`` (both one (x, y), materialised)
    written as ``fuzzy_compared``: in one query, or in slices of at most
    ``fuzzy.compare_slice_pairs`` pairs (both cut by the same hash of x), one query each,
    appended to one folder when ``materialise`` can (``slices``, jobs.lake.ParquetScratch).

    A query's memory grows with the pairs it compares, not with what it keeps: at 1M
    members 12.5M pairs peaked at 6.4 GB of RSS in one query (16.8 s), 3.5 GB in two
    (18.4 s) and 2.0 GB in four (20.7 s); the profiles joined to both ends are
    buffered between the joins' repartitions as the comparisons consume them.
    Output grain: one (x, y), x < y (:func:`compare`'s columns)."""
    write_slices = getattr(materialise, "slices", None)
    limit = conf.fuzzy.compare_slice_pairs
    slices = math.ceil(pairs.count() / limit) if write_slices is not None and limit else 1
    if slices <= 1:
        return materialise(compare(_not_in(pairs, shared), fp, conf), "fuzzy_compared")
    # Each record's features made once, not twice per slice (at 5M members, 25 slices
    # made 250M rows of them from 5M records), and each slice's x ends only its own
    # records: the same hash of crm_id as of x.
    records = materialise(_record_features(fp), "fuzzy_records")
    cut = zip(
        pair_slices(pairs, slices),
        pair_slices(shared, slices),
        pair_slices(records, slices, "crm_id"),
        strict=True,
    )
    parts = (
        compare_records(_not_in(part, shared_part), x_records, records, conf)
        for part, shared_part, x_records in cut
    )
    return write_slices(parts, "fuzzy_compared")


def _not_in(pairs: DataFrame, others: DataFrame) -> DataFrame:
    """``pairs`` less those in ``others`` (both one (x, y))."""
    return pairs.join(others.select("x", "y"), ["x", "y"], "left_anti")


def labelled_pairs(compared: DataFrame, conf: IdentityConf) -> DataFrame:
    """``compared`` (:func:`compare`) with rule (the first of :data:`RULES` the pair meets,
    null when none) and its configured confidence."""
    rule, confidence = F.lit(None).cast("string"), F.lit(None).cast("string")
    for name, cond in reversed(list(rule_conditions(conf.fuzzy).items())):
        rule = F.when(cond, F.lit(name)).otherwise(rule)
        confidence = F.when(cond, F.lit(conf.fuzzy.rules.get(name).confidence)).otherwise(
            confidence
        )
    return compared.withColumn("rule", rule).withColumn("confidence", confidence)


def pair_edges(pairs: DataFrame) -> DataFrame:
    """Edges crm x -> crm y of ``pairs`` (one (x, y) with seen, rule, confidence)."""
    return pairs.select(
        F.lit("crm").alias("src_source"),
        F.col("x").alias("src_key"),
        F.lit("crm").alias("dst_source"),
        F.col("y").alias("dst_key"),
        "rule",
        "confidence",
        F.col("seen").alias("first_seen"),
        F.col("seen").alias("last_seen"),
    )


def rule_edges(labelled: DataFrame) -> DataFrame:
    """Edges of the pairs a fuzzy rule matches and no never-link rule keeps apart.
    Input: :func:`labelled_pairs`."""
    return pair_edges(labelled.filter(~F.col("veto") & F.col("rule").isNotNull()))
