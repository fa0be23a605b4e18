"""Typed bronze rows from checked text rows (pure transforms).

Input grain: one parsed landing row that passed every rule of its suite
(keys ``_source_file``, ``_line_no``), all source columns as trimmed strings.
Output grain: the same row with the types of ``schemas/bronze.yaml``. The rules
already guarantee every cast succeeds; ``try_*`` keeps a surprise from failing
the whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs.sources import Dedup

TS_FMT = "yyyy-MM-dd HH:mm:ss"


# The columns every typed bronze row carries from the parser: rescued extra columns, nulled
# optional fields, the original text and where it came from.
LINEAGE = ("_rescued", "_field_issues", "_raw", "_source_file", "_line_no", "_business_date")


def _ts(c: str) -> Column:
    return F.expr(f"try_to_timestamp(`{c}`, '{TS_FMT}')")


def _dec(c: str) -> Column:
    return F.expr(f"try_cast(`{c}` AS DECIMAL(12,2))")


def _int(c: str) -> Column:
    return F.expr(f"try_cast(`{c}` AS INT)")


def _bool(c: str) -> Column:
    v = F.lower(F.col(c))
    return F.when(v.isin("y", "true", "1"), True).when(v.isin("n", "false", "0"), False)


def type_pos(df: DataFrame) -> DataFrame:
    """POS order lines with typed columns; ``discount`` empty means 0 (CONTRACT 1.1)."""
    return df.select(
        "order_id",
        _int("line_no").alias("line_no"),
        "store_id",
        _ts("order_ts").alias("order_ts"),
        F.to_date(_ts("order_ts")).alias("order_date"),
        "txn_type",
        "ref_order_id",
        "member_card_no",
        "phone",
        "sku",
        "category",
        _int("qty").alias("qty"),
        _dec("unit_price").alias("unit_price"),
        F.coalesce(_dec("discount"), F.lit(0).cast("decimal(12,2)")).alias("discount"),
        _dec("amount").alias("amount"),
        "payment_method",
        _int("points_earned").alias("points_earned"),
        _int("points_redeemed").alias("points_redeemed"),
        *LINEAGE,
    )


def with_content_hash(rows: DataFrame, columns: Iterable[str]) -> DataFrame:
    """Add ``_content_hash``: SHA-256 of a typed row's business ``columns``.

    Two deliveries of one key are the same row when their hashes match; the typed
    values make ``10.0`` and ``10.00`` equal.
    """
    parts = [F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in columns]
    return rows.withColumn("_content_hash", F.sha2(F.concat_ws("\u001f", *parts), 256))


def flag_conflicts(
    batch: DataFrame, existing: DataFrame | None, dedup: Dedup, few: bool = False
) -> tuple[DataFrame, bool]:
    """Flag repeated keys (``dedup.key``) in a batch of typed rows; with whether none
    repeats (every row stays in bronze: the flags are constants).

    ``batch``: typed good rows with ``_content_hash`` (grain: one delivered row).
    ``existing``: (key columns, _content_hash, _source_file) already in bronze from
    files outside the batch (None: there are none). Adds ``_dup_reason``: null for the
    row that stays in bronze, ``dedup.duplicate_reason`` for an identical repeat and
    ``dedup.conflict_reason`` for a repeat with different content, and
    ``first_source_file``: the file of the row that stays. The first delivery (by
    business date, file, line) wins; a row already in bronze wins over the batch.
    ``few``: see :func:`first_copies`.
    """
    keys = list(dedup.key)
    carry = {"_content_hash": "_batch_first_hash", "_source_file": "_batch_first_file"}
    marked, all_first = first_copies(batch, keys, carry, few)
    if existing is not None:
        prior = existing.groupBy(*keys).agg(
            F.first("_content_hash").alias("_prior_hash"),
            F.min("_source_file").alias("_prior_file"),
        )
        ranked = marked.join(prior, keys, "left")
    else:  # no key of the batch is in bronze yet (a first run, a new night): no join
        none = F.lit(None).cast("string")
        ranked = marked.withColumns({"_prior_hash": none, "_prior_file": none})
    first_hash = F.coalesce("_prior_hash", "_batch_first_hash")
    is_dup = F.col("_prior_hash").isNotNull() | ~F.col("_is_first")
    reason = F.when(
        is_dup,
        F.when(F.col("_content_hash") == first_hash, dedup.duplicate_reason).otherwise(
            dedup.conflict_reason
        ),
    )
    first_file = F.coalesce("_prior_file", "_batch_first_file")
    flagged = ranked.withColumns({"_dup_reason": reason, "first_source_file": first_file}).drop(
        "_is_first", "_batch_first_hash", "_prior_hash", "_batch_first_file", "_prior_file"
    )
    return flagged, all_first and existing is None


def type_web(df: DataFrame) -> DataFrame:
    """Web events with typed columns; event_date is the store-local (session zone) date."""
    ts = F.expr("try_to_timestamp(event_ts)")
    return df.select(
        "event_id",
        ts.alias("event_ts"),
        F.to_date(ts).alias("event_date"),
        "anonymous_id",
        "user_id",
        "event_type",
        "channel",
        "sku",
        "category",
        "order_id",
        _dec("revenue").alias("revenue"),
        "properties",
        *LINEAGE,
    )


def type_crm(df: DataFrame) -> DataFrame:
    """CRM row versions with typed columns; gender to M/F, opt-ins to booleans (empty: no consent)."""
    gender = F.when(F.col("gender").isin("M", "男"), "M").when(F.col("gender").isin("F", "女"), "F")
    birth = F.coalesce(
        F.expr("try_to_timestamp(birth_date, 'yyyy-MM-dd')"),
        F.expr("try_to_timestamp(birth_date, 'yyyyMMdd')"),
    )
    return df.select(
        "crm_id",
        "member_card_no",
        "phone",
        "email",
        "id_card_no",
        "web_user_id",
        "name",
        gender.alias("gender"),
        F.to_date(birth).alias("birth_date"),
        "province",
        "city",
        _ts("register_ts").alias("register_ts"),
        "register_channel",
        "home_store_id",
        F.coalesce(_bool("opt_in_sms"), F.lit(False)).alias("opt_in_sms"),
        F.coalesce(_bool("opt_in_email"), F.lit(False)).alias("opt_in_email"),
        F.coalesce(_bool("opt_in_push"), F.lit(False)).alias("opt_in_push"),
        "status",
        _ts("updated_ts").alias("updated_ts"),
        *LINEAGE,
    )


def type_loyalty(df: DataFrame) -> DataFrame:
    """Ledger transactions with typed columns; ``txn_date`` is the store-local date (CONTRACT 1.4)."""
    return df.select(
        "txn_id",
        "crm_id",
        "member_card_no",
        _ts("txn_ts").alias("txn_ts"),
        F.to_date(_ts("txn_ts")).alias("txn_date"),
        "txn_type",
        _int("points").alias("points"),
        "order_id",
        "store_id",
        "reason",
        F.to_date(F.expr("try_to_timestamp(expire_date, 'yyyy-MM-dd')")).alias("expire_date"),
        *LINEAGE,
    )


# Up to this many repeated keys, the rows holding one are picked by a literal IN list of
# their hashes (a filter); above it, every row is joined to the ranking of the repeated
# keys. Each literal costs the engine ~20 us each time the list is used (twice): 160k
# repeated keys (1M members' first run) cost 3.5 s a use, the join 198 s in all.
MAX_IN_LIST_KEYS = 1_000_000


def _position() -> Column:
    """A sortable string of a row's delivery position (business date, file, line): min()
    over strings is vectorised, min() over a struct is not (10x slower on Sail)."""
    return F.concat_ws(
        "|",
        F.col("_business_date").cast("string"),
        F.col("_source_file"),
        F.lpad(F.col("_line_no").cast("string"), 12, "0"),
    )


def _own_first(df: DataFrame, carry: dict[str, str]) -> DataFrame:
    """``df`` with every row its own first copy (no key repeats among these rows)."""
    own = {alias: F.col(c) for c, alias in carry.items()}
    return df.withColumns({"_is_first": F.lit(True), **own})


def _ranked(
    df: DataFrame, repeated: DataFrame, keys: list[str], carry: dict[str, str]
) -> DataFrame:
    """``df`` with each key's first copy marked: the rows of the ``repeated`` keys ranked
    by an aggregate, joined back (a key with one copy is its own first)."""
    pos = _position()
    firsts = (
        df.join(repeated.select(*keys), keys, "left_semi")
        .withColumn("_pos", pos)
        .groupBy(*keys)
        .agg(
            F.min("_pos").alias("_first_pos"),
            *[F.min_by(c, "_pos").alias(alias) for c, alias in carry.items()],
        )
    )
    single = F.col("_first_pos").isNull()
    first = single | (pos == F.col("_first_pos"))
    values = {alias: F.when(single, F.col(c)).otherwise(F.col(alias)) for c, alias in carry.items()}
    return (
        df.join(firsts, keys, "left").withColumns({"_is_first": first, **values}).drop("_first_pos")
    )


def _key_hash(keys: list[str]) -> Column:
    """A 64-bit hash of the key columns: a routing aid (equal keys, equal hash; a rare
    other key with the same hash is only routed along)."""
    return F.xxhash64(*[F.col(k) for k in keys])


def first_copies(
    df: DataFrame, keys: list[str], carry: dict[str, str], few: bool = False
) -> tuple[DataFrame, bool]:
    """Mark the first delivery of each key (grain kept: one row per delivered copy);
    with whether no key repeats (``_is_first`` is then true on every row).

    The first copy by business date, then file, then line wins, so the choice
    does not depend on the order files were processed in. Adds ``_is_first``
    and, for each ``column: alias`` in ``carry``, the first copy's value.

    Almost every key has one copy. The repeated keys are found first by a count over
    their hashes (:func:`repeated_hashes`). None (the usual batch): every row is its own first, no join.
    Up to MAX_IN_LIST_KEYS (a re-sent file, redeliveries): their rows are picked by an IN
    list of key hashes and ranked apart by a window, every other row is its own first.
    Joining the whole batch back to the ranking instead cost 3.6 s of 5.7 s for a 100k
    first run's 2M web events (16k repeated keys), and 198 s at 1M: each joined wide row
    is copied. More: every row is joined to the ranking.

    ``few``: ``df`` is a few rows, most of them repeats (the suspects of
    :func:`suspect_hashes`): all are ranked by the window, with no count and no IN list
    (at 1M members' first run, 175k repeated keys: 7 s of the two lists' uses).
    """
    if few:
        return _ranked_few(df, keys, carry), False
    hashes = repeated_hashes(df, keys)
    if not hashes:
        return _own_first(df, carry), True
    if len(hashes) > MAX_IN_LIST_KEYS:
        repeated = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("_n")).filter("_n > 1")
        return _ranked(df, repeated, keys, carry), False
    # Equal keys hash alike: every copy of a repeated key is among the rows picked (a rare
    # other row picked with them is ranked alone there, its own first). A key holding a
    # null never equals another (as in the join): such a row is its own first.
    picked = is_suspect(keys, hashes)
    rest = _own_first(df.filter(~picked), carry)
    return rest.unionByName(_ranked_few(df.filter(picked), keys, carry)), False


def _ranked_few(df: DataFrame, keys: list[str], carry: dict[str, str]) -> DataFrame:
    """:func:`_ranked` for a few rows: a window over them, read once (positions are
    unique within a batch: one file is read once). A key holding a null never equals
    another: such a row is its own first."""
    by_position = Window.partitionBy(*keys).orderBy(_position())
    whole = _whole(keys)
    values = {
        alias: F.when(whole, F.first(c).over(by_position)).otherwise(F.col(c))
        for c, alias in carry.items()
    }
    first = ~whole | (F.row_number().over(by_position) == 1)
    return df.withColumns({"_is_first": first, **values})


def _whole(keys: list[str]) -> Column:
    """True on a row whose key columns are all set."""
    whole = F.lit(True)
    for k in keys:
        whole = whole & F.col(k).isNotNull()
    return whole


def suspect_hashes(batch: DataFrame, keys: list[str], existing: DataFrame | None) -> set[int] | None:
    """The key hashes (:func:`_key_hash`) of ``batch``'s suspects: a key that repeats
    within the batch or is among ``existing``'s keys (rows already in bronze, few and
    local: :func:`jobs.ingest.job.read_once`). None when there are more than
    MAX_IN_LIST_KEYS (the caller flags every row); empty when there are none.

    Only the suspects need flags (first copy or repeat, conflict): the other rows are
    their key's only copy, so each is its own first copy and stays in bronze. A first run
    at 1M members holds 20M web events and 175k repeated keys: flagging the suspects
    alone keeps the flagged rows small enough to write once, instead of every row.
    Routing by a 64-bit hash of the key: every copy of a key has its hash, and a rare
    other row with the same hash is only flagged along (its own first copy there).
    """
    hashes = repeated_hashes(batch, keys)
    if existing is not None:
        hashes |= {r["h"] for r in existing.select(_key_hash(keys).alias("h")).collect()}
    return None if len(hashes) > MAX_IN_LIST_KEYS else hashes


def repeated_hashes(df: DataFrame, keys: list[str]) -> set[int]:
    """The key hashes (:func:`_key_hash`) that more than one row of ``df`` holds, at most
    MAX_IN_LIST_KEYS + 1 of them: every repeated key's hash, and rarely one that two
    different keys share (its rows are then only ranked along, each its own first).
    Grouped by the 64-bit hash, not by the key columns: 1M members' 20M web events,
    2.1 s against 7.2-8.2 s."""
    repeated = (
        df.groupBy(_key_hash(keys).alias("h"))
        .agg(F.count(F.lit(1)).alias("_n"))
        .filter("_n > 1")
        .select("h")
    )
    return {r["h"] for r in repeated.limit(MAX_IN_LIST_KEYS + 1).collect()}


def is_suspect(keys: list[str], hashes: set[int]) -> Column:
    """True on a row whose key is whole and hashes to one of ``hashes``."""
    return _whole(keys) & F.coalesce(_key_hash(keys).isin(*sorted(hashes)), F.lit(False))
