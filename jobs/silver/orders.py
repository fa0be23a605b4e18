"""Pipeline step `orders`: silver/orders and silver/order_lines with the member of each
order (from silver/member_xref, written by `identity`), and silver/web_events with the
identity keys of each event (its member is looked up when read: :func:`attach_member`).

POS orders are the lines of one order_id; online orders are web ``purchase`` events.
Pure transforms below; I/O only in :func:`run` and the functions it calls.

A night is incremental (conf/silver.yaml, jobs/silver/state.py): only the bronze
business dates whose files changed are read; the orders with a line there (now or
before the change) are recomputed from all their lines and merged in, the events of
those dates are merged in, and the orders whose identity now belongs to another member
(silver/member_xref diffed against the version the last run used) are re-keyed with a
MERGE on the identity keys kept on each row (card_key, phone_key = HMAC, user_key,
anon_key). Events and order lines carry no member (an event's is found through the
xref, a line's is its order's), so a merge never rewrites their history. Every write
is a MERGE computed from bronze and the current xref, and the state is written last,
so a run that dies half-way is redone by the next one.
A backfill (D before the last run) rebuilds the three tables in full as of D; the
pipeline runs it on a scratch copy of silver (jobs.silver.backfill), so the current
silver state stays. A missing state, a new PII key, an unreadable earlier version or
`incremental: false` rebuild the three tables in full too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from jobs import lake_state, storage
from jobs.bronze_changes import dates_in
from jobs.columns import sorted_distinct
from jobs.context import RunContext
from jobs.identity import normalize as N
from jobs.lake import Lake, Materialise, parquet_materialiser
from jobs.laps import Laps, timed_materialiser
from jobs.privacy.pii import hmac_col
from jobs.schemas import conform, table_schema
from jobs.silver import state as S
from jobs.silver.conf import load_silver_conf

MONEY = "decimal(14,2)"
LINE_TOTAL = "decimal(18,2)"  # an order's lines of one category and date, summed


def _xref_of(xref: DataFrame, source: str, alias: str) -> DataFrame:
    return xref.filter((F.col("source") == source) & F.col("member_id").isNotNull()).select(
        F.col("source_key").alias(f"{alias}_key"), F.col("member_id").alias(f"{alias}_member")
    )


# (key column on silver rows, xref source) pairs, in priority order.
POS_KEYS = (("card_key", "pos_card"), ("phone_key", "pos_phone"))
WEB_KEYS = (("user_key", "web_user"), ("anon_key", "web_anon"))


def attach_member(
    df: DataFrame, xref: DataFrame, keys: tuple[tuple[str, str], ...], small: bool = False
) -> DataFrame:
    """``df`` plus ``member_id``: the member of its first key found in the xref.

    ``df`` holds the key columns of ``keys``; grain unchanged (xref keys are unique
    per source). With ``small=True`` (a night's rows) the xref is first cut down to
    the keys of ``df`` with a broadcast semi join, so the big xref is only streamed.
    """
    members = []
    for col, source in keys:
        alias = col.removesuffix("_key")
        side = _xref_of(xref, source, alias)
        if small:
            wanted = df.select(col).where(F.col(col).isNotNull()).distinct()
            side = side.join(F.broadcast(wanted), col, "left_semi")
        df = df.join(side, col, "left")
        members.append(f"{alias}_member")
    return df.withColumn("member_id", F.coalesce(*members)).drop(*members)


def dedupe_pos_lines(pos: DataFrame) -> DataFrame:
    """One row per (order_id, line_no): the latest delivery of a re-sent line wins.

    Input/output grain: one POS line (bronze/pos_lines).
    """
    w = Window.partitionBy("order_id", "line_no").orderBy(
        F.col("_ingested_at").desc_nulls_last(),
        F.col("_source_file").desc_nulls_last(),
        F.col("_line_no").desc_nulls_last(),
    )
    return pos.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1").drop("_rn")


def unique_pos_lines(pos: DataFrame) -> DataFrame:
    """:func:`dedupe_pos_lines`, checked first: ingest keeps one bronze row per (order_id,
    line_no) (a repeat goes to duplicates or quarantine), so the window over every wide
    row (at 100k members 10 s of a 1M-line full rebuild) runs only when a narrow count
    finds a repeated key."""
    repeated = pos.groupBy("order_id", "line_no").count().filter("count > 1").limit(1)
    return dedupe_pos_lines(pos) if repeated.collect() else pos


def pos_lines_with_member(
    pos: DataFrame, xref: DataFrame, key: bytes, small: bool = False
) -> DataFrame:
    """POS lines with the member of their order: the card's member, else the phone's.

    Input: deduplicated bronze POS lines (one line), silver/member_xref (one source
    identity). Output grain: one POS line, plus the order's ``card_key``, ``phone_key``
    (HMAC of the normalised phone) and ``member_id``. A blocked phone (the cashiers'
    placeholder) has no member, so its orders stay anonymous.
    """
    per_order = pos.groupBy("order_id").agg(
        F.max(N.norm_card(F.col("member_card_no"))).alias("card_key"),
        F.max(N.norm_phone(F.col("phone"))).alias("phone_n"),
    )
    per_order = per_order.withColumn("phone_key", hmac_col(F.col("phone_n"), key)).drop("phone_n")
    per_order = attach_member(per_order, xref, POS_KEYS, small)
    return pos.join(per_order, "order_id", "left")


LINE_TOTAL_KEYS = ("category", "order_date", "is_purchase")


def line_item(category: Column, order_date: Column, is_purchase: Column, net: Column) -> Column:
    """One line as :func:`line_totals` sums it (a null amount counts 0, as in the member
    features)."""
    return F.struct(
        category.alias("category"),
        order_date.alias("order_date"),
        is_purchase.alias("is_purchase"),
        F.coalesce(net, F.lit(0)).cast(LINE_TOTAL).alias("net_amount"),
    )


def line_totals(items: Column) -> Column:
    """``items`` (an order's :func:`line_item` structs) summed by (category, line date,
    line is a purchase): the column ``line_totals`` of silver/orders, sorted by those
    (a null last in each).

    The member features read it instead of the lines (a line carries no member: it is
    its order's, and a member merge then never rewrites the lines). A few items an
    order, so summed inside the row, with no shuffle: the distinct keys, each with the
    sum of the items holding it (null-safe: a line without a category is its own key).
    """
    keys = F.array_distinct(
        F.transform(items, lambda x: F.struct(*[x[k].alias(k) for k in LINE_TOTAL_KEYS]))
    )

    def total(key: Column) -> Column:
        same = F.filter(items, lambda x: _all([x[k].eqNullSafe(key[k]) for k in LINE_TOTAL_KEYS]))
        zero = F.lit(0).cast(LINE_TOTAL)
        return F.aggregate(same, zero, lambda acc, x: (acc + x["net_amount"]).cast(LINE_TOTAL))

    totals = F.transform(
        keys,
        lambda key: F.struct(
            *[key[k].alias(k) for k in LINE_TOTAL_KEYS], total(key).alias("net_amount")
        ),
    )
    return _sorted_by_keys(totals)


def _sorted_by_keys(totals: Column) -> Column:
    """``totals`` sorted by (category, order_date, is_purchase), a null after every value.

    Sorted on a prefix without nulls (whether null, then the value or a stand-in):
    engines order a struct's null fields differently (Sail 0.7.2 put a null category
    after the others; Spark's ascending struct order puts nulls first), and the table
    must be the same on both."""
    stand_in = {
        "category": F.lit(""),
        "order_date": F.lit("1970-01-01").cast("date"),
        "is_purchase": F.lit(False),
    }

    def prefix(t: Column) -> list[Column]:
        out = []
        for i, k in enumerate(LINE_TOTAL_KEYS):
            out += [t[k].isNull().alias(f"n{i}"), F.coalesce(t[k], stand_in[k]).alias(f"v{i}")]
        return out

    keyed = F.transform(totals, lambda t: F.struct(*prefix(t), t.alias("total")))
    return F.transform(F.array_sort(keyed), lambda x: x["total"])


def _all(conditions: list[Column]) -> Column:
    out = conditions[0]
    for c in conditions[1:]:
        out = out & c
    return out


def pos_orders(lines: DataFrame) -> DataFrame:
    """POS orders at order grain (keys order_id, channel='store').

    Input: POS lines with member (one line). SALE/RETURN from the lines; gross is the
    list value sum(qty * unit_price), discount sum(discount), net sum(amount) (for a
    RETURN the money given back); ``line_totals`` the lines' amounts by category, date
    and purchase flag (:func:`line_totals`).
    """
    gross = (F.col("qty") * F.col("unit_price")).cast(MONEY)
    # The line's item is made before the aggregation: inside it, Spark 4 would read
    # ``order_date`` and ``txn_type`` as the aliases of this aggregation's own columns
    # (a lateral alias, refused inside an aggregate function).
    item = line_item(
        F.col("category"),
        F.col("order_date"),
        F.col("txn_type") == "SALE",
        F.col("amount").cast(MONEY),
    )
    lines = lines.withColumn("_line_item", item)
    return lines.groupBy("order_id").agg(
        F.lit("pos").alias("source"),
        F.lit("store").alias("channel"),
        F.lit(False).alias("is_online"),
        F.max("txn_type").alias("txn_type"),
        (F.max("txn_type") == "SALE").alias("is_purchase"),
        F.max("ref_order_id").alias("ref_order_id"),
        F.max("member_id").alias("member_id"),
        F.max("store_id").alias("store_id"),
        F.min("order_ts").alias("order_ts"),
        F.min("order_date").alias("order_date"),
        F.sum(gross).cast(MONEY).alias("gross_amount"),
        F.sum(F.coalesce(F.col("discount"), F.lit(0))).cast(MONEY).alias("discount_amount"),
        F.sum("amount").cast(MONEY).alias("net_amount"),
        F.count(F.lit(1)).cast("int").alias("n_lines"),
        F.sum("qty").cast("long").alias("n_items"),
        sorted_distinct("category").alias("categories"),
        line_totals(F.collect_list("_line_item")).alias("line_totals"),
        F.max("payment_method").alias("payment_method"),
        F.max("card_key").alias("card_key"),
        F.max("phone_key").alias("phone_key"),
        F.lit(None).cast("string").alias("user_key"),
        F.lit(None).cast("string").alias("anon_key"),
    )


def pos_order_lines(lines: DataFrame) -> DataFrame:
    """POS lines in the silver shape (keys order_id, channel='store', line_no)."""
    return lines.select(
        "order_id",
        "line_no",
        F.lit("store").alias("channel"),
        F.lit(False).alias("is_online"),
        "txn_type",
        (F.col("txn_type") == "SALE").alias("is_purchase"),
        "order_ts",
        "order_date",
        "sku",
        "category",
        "qty",
        (F.col("qty") * F.col("unit_price")).cast(MONEY).alias("gross_amount"),
        F.coalesce(F.col("discount"), F.lit(0)).cast(MONEY).alias("discount_amount"),
        F.col("amount").cast(MONEY).alias("net_amount"),
    )


def web_events_with_member(web: DataFrame, xref: DataFrame, small: bool = False) -> DataFrame:
    """Web events with the member of their account, else of their device.

    Input: bronze/web_events (one event), silver/member_xref. Output grain: one event,
    plus its identity keys ``user_key``, ``anon_key`` and ``member_id``.
    """
    return attach_member(keyed_events(web), xref, WEB_KEYS, small)


def _purchase_events(events: DataFrame) -> DataFrame:
    """The events that make an online order: purchases with an order id."""
    return events.filter((F.col("event_type") == "purchase") & F.col("order_id").isNotNull())


def online_orders(events: DataFrame) -> DataFrame:
    """Online orders: one per (order_id, channel) of ``purchase`` events, the first event
    wins (a purchase sent twice with two event ids is still one order).

    Input: web events with member (one event). Output grain: one online order.
    """
    p = _purchase_events(events)
    w = Window.partitionBy("order_id", "channel").orderBy("event_ts", "event_id")
    p = p.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1")
    amount = F.col("revenue").cast(MONEY)
    return p.select(
        "order_id",
        F.lit("web").alias("source"),
        "channel",
        F.lit(True).alias("is_online"),
        F.lit("SALE").alias("txn_type"),
        F.lit(True).alias("is_purchase"),
        F.lit(None).cast("string").alias("ref_order_id"),
        "member_id",
        F.lit(None).cast("string").alias("store_id"),
        F.col("event_ts").alias("order_ts"),
        F.col("event_date").alias("order_date"),
        amount.alias("gross_amount"),
        F.lit(0).cast(MONEY).alias("discount_amount"),
        amount.alias("net_amount"),
        F.lit(1).cast("int").alias("n_lines"),
        F.lit(1).cast("long").alias("n_items"),
        F.when(F.col("category").isNotNull(), F.array("category"))
        .otherwise(F.array().cast("array<string>"))
        .alias("categories"),
        F.array(line_item(F.col("category"), F.col("event_date"), F.lit(True), amount)).alias(
            "line_totals"
        ),
        F.lit(None).cast("string").alias("payment_method"),
        F.lit(None).cast("string").alias("card_key"),
        F.lit(None).cast("string").alias("phone_key"),
        "user_key",
        "anon_key",
        "sku",
        "category",
    )


def online_order_lines(orders: DataFrame) -> DataFrame:
    """The one line of each online order (line_no 1)."""
    return orders.select(
        "order_id",
        F.lit(1).alias("line_no"),
        "channel",
        "is_online",
        "txn_type",
        "is_purchase",
        "order_ts",
        "order_date",
        "sku",
        "category",
        F.lit(1).alias("qty"),
        "gross_amount",
        "discount_amount",
        "net_amount",
    )


def _month(df: DataFrame) -> DataFrame:
    return df.withColumn("order_month", F.date_format("order_date", "yyyy-MM"))


def keyed_events(web: DataFrame) -> DataFrame:
    """Web events with their identity keys ``user_key`` and ``anon_key`` (grain: one
    event; silver/web_events carries no member, :func:`attach_member` finds it)."""
    return web.withColumn("user_key", N.norm_text_id(F.col("user_id"))).withColumn(
        "anon_key", N.norm_text_id(F.col("anonymous_id"))
    )


def _as_is(df: DataFrame, name: str) -> DataFrame:
    return df


def build(
    pos: DataFrame, web: DataFrame, xref: DataFrame, key: bytes, mat: Materialise = _as_is
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """orders, order_lines and web_events (see each transform for grain and keys).

    ``mat(df, name)`` may materialise the two results both order tables read: the POS
    lines with their member and the online orders (else each write computes them again:
    at 1M members the 9M lines' dedup and member joins, the 20M events' scan). Runs one
    small query at once (:func:`unique_pos_lines`: whether any POS line repeats).
    """
    events = keyed_events(web)
    purchases = attach_member(_purchase_events(events), xref, WEB_KEYS)
    online = mat(online_orders(purchases), "online")
    lines = mat(pos_lines_with_member(unique_pos_lines(pos), xref, key), "pos")
    orders = _month(pos_orders(lines).unionByName(online.drop("sku", "category")))
    order_lines = _month(pos_order_lines(lines).unionByName(online_order_lines(online)))
    return orders, order_lines, events


# --------------------------------------------------------------------------- I/O

log = logging.getLogger(__name__)

ORDERS, LINES, EVENTS = "silver/orders", "silver/order_lines", "silver/web_events"
SILVER = (ORDERS, LINES, EVENTS)


def _str_in(col: str, values: list[str]) -> str:
    quoted = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    return f"{col} IN ({quoted})"


def _upserts(df: DataFrame, name: str) -> DataFrame:
    """Rows to insert or replace in ``name`` (all its columns, plus ``_op``)."""
    return conform(df, name).withColumn("_op", F.lit("upsert"))


def _deletes(keys: DataFrame, name: str) -> DataFrame:
    """Rows of ``name`` to delete, by the key columns of ``keys`` (other columns null)."""
    cols = [
        F.col(f.name).cast(f.dataType).alias(f.name)
        if f.name in keys.columns
        else F.lit(None).cast(f.dataType).alias(f.name)
        for f in table_schema(name).struct.fields
    ]
    return keys.select(*cols).withColumn("_op", F.lit("delete"))


def upsert_rows(lake: Lake, src: DataFrame, name: str, target_filter: str | None) -> None:
    """Apply ``src`` (the table's columns plus ``_op``, :func:`_upserts` and
    :func:`_deletes`) to ``name`` in one MERGE on its declared keys (never null here, so
    compared with ``=``). ``target_filter`` (on ``t.``) limits the target rows looked at
    to the partitions the source can touch; MERGE rewrites only the files holding a
    matched row and adds new files for the inserts."""
    lake.apply_changes(src, name, target_filter=target_filter, null_safe=False)


def rekey_rows(lake: Lake, src: DataFrame, name: str, months: list[str] | None) -> None:
    """Give the rows of ``name`` (silver/orders) matching ``src`` (``order_id``,
    ``channel``, ``member_id``; one row per order) the member of ``src`` (one commit).

    A table with deletion vectors (schemas/silver.yaml) takes one MERGE, which marks the
    old rows in deletion vectors and writes the new ones alone (1M members, 67 orders:
    2.2 s against 7.6 s for their four months rewritten). Without them, ``months``: the
    ``order_month`` partitions holding every matching row, rewritten whole in one
    ``replaceWhere`` commit, each row with its member from a broadcast join: on Sail
    0.7.2 half the time of a MERGE, which then rewrites the same files (1M members, 230
    orders in 4 months: orders 6.5 s against 12.6 s, lines 10.0 s against 21.4 s). None
    (a row without a month): one MERGE over the table."""
    if months is None or lake.has_deletion_vectors(name):
        (
            lake.merge_into(src, name, ["order_id", "channel"], null_safe=False)
            .when_matched_update({"member_id": "s.member_id"},
                                 "NOT (t.member_id <=> s.member_id)")
            .execute()
        )  # fmt: skip
        return
    keys = ["order_id", "channel"]
    where = _str_in("order_month", months)
    current = lake.read(name).filter(where)
    fixes = src.select(*keys, F.col("member_id").alias("_rekeyed"), F.lit(True).alias("_hit"))
    joined = current.join(F.broadcast(fixes.dropDuplicates(keys)), keys, "left")
    member = F.when(F.col("_hit"), F.col("_rekeyed")).otherwise(F.col("member_id"))
    lake.replace_where(joined.withColumn("member_id", member).select(*current.columns), name, where)


def _rows_in_table(lake: Lake, name: str) -> int:
    """Row count from the Delta log's file statistics (no data read)."""
    if not lake.exists(name):
        return 0
    actions = lake.delta_table(name).get_add_actions(flatten=True)
    if "num_records" not in actions.column_names:
        return 0
    return int(sum(v or 0 for v in actions.column("num_records").to_pylist()))


def _xref_version(lake: Lake) -> int:
    return lake.version(S.XREF) if lake.exists(S.XREF) else -1


def choose_mode(
    ctx: RunContext,
    st: S.SilverState | None,
    pos: S.TableSnapshot,
    web: S.TableSnapshot,
    xref_version: int,
) -> tuple[str, str]:
    """``full``, ``incremental`` or ``noop`` (nothing new since the last run), with why."""
    if not load_silver_conf().silver.incremental:
        return "full", "incremental off"
    if st is None:
        return "full", "no state"
    if ctx.as_of < st.as_of:
        return "full", f"backfill (last run {st.as_of}): rebuilt as of {ctx.as_of}"
    if st.format != S.FORMAT:
        return "full", "silver layout changed"
    if st.fingerprint != S.key_fingerprint(ctx.pii_key):
        return "full", "PII key changed"
    if not all(ctx.lake.exists(t) for t in SILVER):
        return "full", "a silver table is missing"
    if xref_version < st.xref_version:
        return "full", "member_xref was recreated"
    t_pos, t_web = S.touched_dates(st.pos, pos), S.touched_dates(st.web, web)
    if t_pos is None or t_web is None:
        return "full", "bronze files without a single business date"
    if not t_pos and not t_web and xref_version == st.xref_version:
        return "noop", "no bronze or member change since the last run"
    return "incremental", f"{len(t_pos)} POS and {len(t_web)} web dates touched"


def _full(
    ctx: RunContext, pos_snap: S.TableSnapshot, web_snap: S.TableSnapshot, mat: Materialise
) -> dict:
    """Rebuild the three tables from all bronze dated <= D (``mat``: the step's scratch
    materialiser, for the lines and online orders both order tables read)."""
    d, lake = ctx.as_of, ctx.lake
    lap = Laps()
    pos = lake.read(S.POS).filter(F.col("_business_date") <= F.lit(d))
    web = lake.read(S.WEB).filter(F.col("_business_date") <= F.lit(d))
    orders, lines, events = build(
        pos, web, lake.read(S.XREF), ctx.pii_key, timed_materialiser(mat, lap)
    )
    lake.overwrite(events, EVENTS)
    lap("write_events")
    lake.overwrite(orders, ORDERS)
    lap("write_orders")
    lake.overwrite(lines, LINES)
    lap("write_lines")
    n_orders = _rows_in_table(lake, ORDERS)
    return {
        "phase_seconds": lap.seconds,
        "rows_in": sum(pos_snap.rows.values()) + sum(web_snap.rows.values()),
        "rows_out": n_orders,
        "orders_written": n_orders,
        "order_lines_written": _rows_in_table(lake, LINES),
        "web_events_written": _rows_in_table(lake, EVENTS),
    }


def _changed_identities(lake: Lake, xref: DataFrame, version: int) -> DataFrame:
    """(source, source_key) in xref ``version`` whose member is another now (moved, gone,
    or to or from null).

    Identities that appear only now are left out: xref ``version`` held every identity
    of the bronze rows silver had taken in, so rows carrying a new one come from the
    dates touched since, which this run recomputes with the current xref anyway. (At
    1M members a night brings ~9,500 new identities and ~900 moved ones.)
    """
    old = lake.read_version(S.XREF, version).select(
        "source", "source_key", F.col("member_id").alias("_old")
    )
    return (
        old.join(xref.select("source", "source_key", "member_id"), ["source", "source_key"], "left")
        .filter(~F.col("member_id").eqNullSafe(F.col("_old")))
        .select("source", "source_key")
    )


def _keyed(df: DataFrame, keys: tuple[tuple[str, str], ...]) -> DataFrame:
    """One row per (row of ``df``, non-null identity key) as ``source``, ``source_key``."""
    pairs = F.array(
        *[F.struct(F.lit(src).alias("source"), F.col(col).alias("source_key")) for col, src in keys]
    )
    return (
        df.withColumn("_k", F.explode(pairs))
        .select(
            *df.columns,
            F.col("_k.source").alias("source"),
            F.col("_k.source_key").alias("source_key"),
        )
        .where(F.col("source_key").isNotNull())
    )


class _TimeTravelUnavailable(RuntimeError):
    """An earlier version of bronze or of the xref could not be read (vacuumed)."""


def _read_earlier(lake: Lake, st, xref, xref_version, old_pos_dates, old_web_dates, mat):
    """What the last run saw and is gone or changed since: POS line keys and web events
    of the touched dates as of the last run's versions, and the identities that moved."""
    old_pos = old_web = changed = None
    if old_pos_dates:
        old_pos = mat(
            lake.read_version(S.POS, st.pos.version)
            .filter(F.col("_business_date").isin(*old_pos_dates))
            .select("order_id", "line_no", "order_date")
            .distinct(),
            "old_pos",
        )
    if old_web_dates:
        old_web = mat(
            lake.read_version(S.WEB, st.web.version)
            .filter(F.col("_business_date").isin(*old_web_dates))
            .select("event_id", "event_date", "event_type", "order_id", "channel"),
            "old_web",
        )
    if xref_version != st.xref_version:
        changed = mat(_changed_identities(lake, xref, st.xref_version), "xref_changed")
    return old_pos, old_web, changed


@dataclass
class _NightSources:
    """What an incremental night's stages gather for the order and line merges: row
    changes (the table's columns plus ``_op``) and the dates whose months hold every
    row they can match (the merges look at those partitions only)."""

    orders: list[DataFrame] = field(default_factory=list)
    lines: list[DataFrame] = field(default_factory=list)
    month_dates: list[DataFrame] = field(default_factory=list)


def _incremental(
    ctx: RunContext,
    st: S.SilverState,
    pos_snap: S.TableSnapshot,
    web_snap: S.TableSnapshot,
    xref_version: int,
    mat,
) -> dict:
    """Merge in what changed since ``st``; see the module docstring. Stages, in order:
    read the earlier versions, web events, online orders, POS orders, the order and
    line merges, the re-keying (their seconds in ``phase_seconds``)."""
    lake, d = ctx.lake, ctx.as_of
    lap = Laps()
    xref = lake.read(S.XREF)
    t_pos = S.touched_dates(st.pos, pos_snap) or []
    t_web = S.touched_dates(st.web, web_snap) or []
    figures: dict = {
        "touched_dates": {"pos_lines": len(t_pos), "web_events": len(t_web)},
        "rows_in": sum(pos_snap.rows.get(x.isoformat(), 0) for x in t_pos)
        + sum(web_snap.rows.get(x.isoformat(), 0) for x in t_web),
    }
    # Reads of earlier versions first (time travel): when a vacuum removed their files,
    # nothing is written yet and the caller rebuilds in full instead.
    try:
        old_pos, old_web, changed = _read_earlier(
            lake, st, xref, xref_version,
            [x for x in t_pos if x.isoformat() in st.pos.digests],
            [x for x in t_web if x.isoformat() in st.web.digests], mat,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - any failure here is before the first write
        raise _TimeTravelUnavailable(str(exc).splitlines()[0][:200]) from exc
    lap("read_earlier")
    sources = _NightSources()
    if t_web:
        purchases = _merge_web_events(lake, d, xref, t_web, old_web, mat, figures)
        lap("web_events")
        _online_orders(lake, xref, purchases, old_web, mat, sources)
        lap("online_orders")
    if t_pos:
        _pos_orders(ctx, xref, t_pos, old_pos, mat, sources, figures)
        lap("pos_recompute")
    if sources.orders:
        _merge_orders_and_lines(lake, sources, mat, figures)
        lap("merge_orders_lines")
    if changed is not None:
        figures.update(_rekey(lake, xref, changed, mat, lap))
    figures["phase_seconds"] = lap.seconds
    figures["rows_out"] = sum(
        figures.get(f, 0) for f in ("orders_written", "orders_deleted", "orders_rekeyed")
    )
    return figures


def _merge_web_events(
    lake: Lake, d, xref: DataFrame, t_web: list, old_web: DataFrame | None, mat, figures: dict
) -> DataFrame:
    """Web events of the touched dates: upsert what is there now, delete what went
    away (one MERGE). Returns the purchase columns of the events now and before
    (``event_type``, ``order_id``, ``channel``)."""
    now = lake.read(S.WEB).filter(
        F.col("_business_date").isin(*t_web) & (F.col("_business_date") <= F.lit(d))
    )
    events = mat(web_events_with_member(now, xref, small=True), "events")
    parts = [_upserts(events, EVENTS)]
    purchases = events.select("event_type", "order_id", "channel")
    if old_web is not None:
        gone = old_web.join(now.select("event_id"), "event_id", "left_anti")
        parts.append(_deletes(gone.select("event_id"), EVENTS))
        purchases = purchases.unionByName(old_web.select("event_type", "order_id", "channel"))
    src = mat(parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1]), "events_src")
    # The partitions the merge can touch: the events' dates now and before.
    n_events, ev_dates, nulls = _count_and_values(events, "event_date")
    if old_web is not None:
        _, old_dates, old_nulls = _count_and_values(old_web, "event_date")
        ev_dates, nulls = ev_dates + old_dates, nulls + old_nulls
    upsert_rows(lake, src, EVENTS, None if nulls else dates_in("t.event_date", ev_dates))
    figures["web_events_written"] = n_events
    return purchases


def _online_orders(
    lake: Lake,
    xref: DataFrame,
    purchases: DataFrame,
    old_web: DataFrame | None,
    mat,
    sources: _NightSources,
) -> None:
    """Online orders with a purchase event among ``purchases``, now or before:
    recomputed from all their purchase events (first one wins)."""
    k_on = mat(
        _purchase_events(purchases).select("order_id", "channel").distinct(),
        "online_keys",
    )
    all_purchases = mat(
        _purchase_events(lake.read(EVENTS)).join(
            F.broadcast(k_on), ["order_id", "channel"], "left_semi"
        ),
        "purchases",
    )
    online = mat(online_orders(attach_member(all_purchases, xref, WEB_KEYS, small=True)), "online")
    # An online order's row sits in the month of its first purchase event, one of these.
    sources.month_dates.append(all_purchases.select(F.col("event_date").alias("d")))
    if old_web is not None:
        earlier = old_web.filter(F.col("event_type") == "purchase")
        sources.month_dates.append(earlier.select(F.col("event_date").alias("d")))
    gone_orders = k_on.join(online, ["order_id", "channel"], "left_anti")
    sources.orders += [
        _upserts(_month(online.drop("sku", "category")), ORDERS),
        _deletes(gone_orders, ORDERS),
    ]
    sources.lines += [
        _upserts(_month(online_order_lines(online)), LINES),
        _deletes(gone_orders.withColumn("line_no", F.lit(1)), LINES),
    ]


def _pos_orders(
    ctx: RunContext,
    xref: DataFrame,
    t_pos: list,
    old_pos: DataFrame | None,
    mat,
    sources: _NightSources,
    figures: dict,
) -> None:
    """POS orders with a line in a touched date, now or before: recomputed from all
    their lines (an order's lines can sit in several dates' files)."""
    bronze = ctx.lake.read(S.POS).filter(F.col("_business_date") <= F.lit(ctx.as_of))
    ids = bronze.filter(F.col("_business_date").isin(*t_pos)).select("order_id")
    if old_pos is not None:
        ids = ids.unionByName(old_pos.select("order_id"))
    affected = mat(ids.distinct(), "pos_ids")
    extra = [
        r[0]
        for r in bronze.filter(~F.col("_business_date").isin(*t_pos))
        .select("order_id", "_business_date")
        .join(F.broadcast(affected), "order_id", "left_semi")
        .select("_business_date")
        .distinct()
        .collect()
    ]
    src = bronze.filter(F.col("_business_date").isin(*(t_pos + extra))).join(
        F.broadcast(affected), "order_id", "left_semi"
    )
    lines = pos_lines_with_member(dedupe_pos_lines(src), xref, ctx.pii_key, small=True)
    lines = mat(lines, "pos")
    p_orders = mat(_month(pos_orders(lines)), "pos_orders")
    p_lines = _month(pos_order_lines(lines))
    sources.month_dates.append(lines.select(F.col("order_date").alias("d")))
    if old_pos is not None:
        sources.month_dates.append(old_pos.select(F.col("order_date").alias("d")))
    gone_orders = affected.join(p_orders, "order_id", "left_anti")
    sources.orders += [
        _upserts(p_orders, ORDERS),
        _deletes(gone_orders.withColumn("channel", F.lit("store")), ORDERS),
    ]
    sources.lines.append(_upserts(p_lines, LINES))
    if old_pos is not None:
        gone_lines = old_pos.join(p_lines, ["order_id", "line_no"], "left_anti")
        sources.lines.append(_deletes(gone_lines.withColumn("channel", F.lit("store")), LINES))
    figures["extra_pos_dates"] = len(extra)


def _union_all(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def _merge_orders_and_lines(lake: Lake, sources: _NightSources, mat, figures: dict) -> None:
    """The orders MERGE, then the lines MERGE, on the months the changes can touch."""
    src = mat(_union_all(sources.orders), "orders_src")
    dates = _union_all(sources.month_dates)
    months = [
        r[0] for r in dates.select(F.date_format("d", "yyyy-MM").alias("m")).distinct().collect()
    ]
    where = None if None in months else _str_in("t.order_month", months)
    figures["months_merged"] = len(months)
    upsert_rows(lake, src, ORDERS, where)
    lines = mat(_union_all(sources.lines), "lines_src")
    upsert_rows(lake, lines, LINES, where)
    agg = src.agg(
        F.sum((F.col("_op") == "upsert").cast("long")).alias("up"),
        F.sum((F.col("_op") == "delete").cast("long")).alias("del"),
    ).collect()[0]
    figures["orders_written"] = int(agg["up"] or 0)
    figures["orders_deleted"] = int(agg["del"] or 0)
    figures["order_lines_written"] = lines.count()


def _count_and_values(df: DataFrame, col: str) -> tuple[int, list, int]:
    """Rows of ``df``, the distinct non-null values of ``col`` and its nulls (one action)."""
    r = df.agg(
        F.count(F.lit(1)).alias("n"),
        F.collect_set(col).alias("v"),
        F.sum(F.col(col).isNull().cast("long")).alias("nulls"),
    ).collect()[0]
    return int(r["n"]), list(r["v"] or []), int(r["nulls"] or 0)


# Up to this many changed identities are looked for with literal IN lists (a filter
# evaluated while scanning the narrow key columns); above it with a broadcast join.
MAX_IN_LIST = 20_000


def _rows_with_keys(
    df: DataFrame, keys: tuple[tuple[str, str], ...], changed: DataFrame, few: list | None
) -> DataFrame:
    """Rows of ``df`` with any identity key among ``changed`` (source, source_key);
    ``few``: those identities as collected rows when there are few of them."""
    if few is not None:
        by_source: dict[str, list[str]] = {}
        for r in few:
            if r["source_key"] is not None:
                by_source.setdefault(r["source"], []).append(r["source_key"])
        cond = F.lit(False)
        for col, source in keys:
            if by_source.get(source):
                cond = cond | F.col(col).isin(*by_source[source])
        return df.filter(cond)
    return (
        _keyed(df, keys)
        .join(F.broadcast(changed), ["source", "source_key"], "left_semi")
        .select(*df.columns)
        .distinct()
    )


def _rekey(lake: Lake, xref: DataFrame, changed: DataFrame, mat, lap: Laps) -> dict:
    """Give the orders whose identity keys moved to another member (or to none) the
    member of the current xref. Their lines carry no member (theirs is the order's), so
    they are not rewritten. Only orders whose member really changes are rewritten: an
    order found by a moved phone whose card, first in priority, kept its member, and the
    night's own orders (already written with the current xref), keep theirs; with none
    left, the table gets no commit (a rerun after a crash past this rewrite finds none).
    ``lap`` times finding the orders (``rekey_find``) and their rewrite
    (``rekey_orders``)."""
    few = changed.limit(MAX_IN_LIST + 1).collect()
    n_changed = len(few) if len(few) <= MAX_IN_LIST else changed.count()
    if n_changed == 0:
        lap("rekey_find")
        return {"identities_changed": 0, "orders_rekeyed": 0}
    if n_changed > MAX_IN_LIST:
        few = None
    key_cols = [c for c, _ in POS_KEYS + WEB_KEYS]
    orders = lake.read(ORDERS).select(
        "order_id", "channel", "order_month", F.col("member_id").alias("_was"), *key_cols
    )
    cand = mat(_rows_with_keys(orders, POS_KEYS + WEB_KEYS, changed, few), "rekey_cand")
    pos = attach_member(cand.filter(F.col("channel") == "store"), xref, POS_KEYS, small=True)
    web = attach_member(cand.filter(F.col("channel") != "store"), xref, WEB_KEYS, small=True)
    moved = pos.unionByName(web).filter(~F.col("member_id").eqNullSafe(F.col("_was")))
    rk = mat(moved.select("order_id", "channel", "order_month", "member_id"), "rk")
    n_orders, months, nulls = _count_and_values(rk, "order_month")
    lap("rekey_find")
    if n_orders:
        rekey_rows(lake, rk, ORDERS, None if nulls else months)
        lap("rekey_orders")
    return {"identities_changed": n_changed, "orders_rekeyed": n_orders}


def _night_context(ctx: RunContext) -> RunContext:
    """``ctx`` for an incremental night: on the hash-join session when ``orders`` is in
    ``engine.hash_join_nights`` (a night's few keys against history: the re-keying
    MERGEs' joins then build on the few source rows instead of sorting every order)."""
    from jobs.engine import step_spark

    return ctx.on(step_spark(ctx.spark, "orders", ctx.settings.engine.hash_join_nights))


def run(ctx: RunContext) -> dict:
    """Pipeline step: bring the silver order and event tables up to ``ctx.as_of``."""
    t0 = time.perf_counter()
    lake, d = ctx.lake, ctx.as_of
    st = S.load_state(lake)
    pos_snap = S.table_snapshot(lake, S.POS, d)
    web_snap = S.table_snapshot(lake, S.WEB, d)
    xref_version = _xref_version(lake)
    mode, why = choose_mode(ctx, st, pos_snap, web_snap, xref_version)
    log.info("orders %s: %s run (%s)", d, mode, why)
    if mode == "noop":
        assert st is not None
        if st.as_of != d:
            st.as_of = d
            S.save_state(lake, st, ctx.run_id)
        return {"rows_in": 0, "rows_out": 0, "mode": mode, "mode_reason": why}

    base = lake_state.scratch_dir(ctx.settings.paths.lake, "silver", ctx.run_id)
    mat = parquet_materialiser(base)
    try:
        figures = None
        if mode == "incremental":
            assert st is not None
            try:
                figures = _incremental(
                    _night_context(ctx), st, pos_snap, web_snap, xref_version, mat
                )
            except _TimeTravelUnavailable as exc:
                mode, why = "full", f"earlier version unreadable ({exc})"
                log.warning("orders %s: %s, rebuilding in full", d, why)
        if figures is None:
            figures = _full(ctx, pos_snap, web_snap, mat)
        S.save_state(
            lake,
            S.SilverState(
                as_of=d,
                pos=pos_snap,
                web=web_snap,
                xref_version=xref_version,
                fingerprint=S.key_fingerprint(ctx.pii_key),
                written={t: lake.version(t) for t in (ORDERS, LINES)},
            ),
            ctx.run_id,
        )
    finally:
        storage.remove_tree(base)
    return {
        **figures,
        "mode": mode,
        "mode_reason": why,
        "seconds_total": round(time.perf_counter() - t0, 3),
    }
