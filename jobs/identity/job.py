"""Pipeline step `identity`: bronze -> identity graph -> components -> stable member ids
-> silver/member_xref, silver/members, restricted/member_pii, silver/identity_edges,
silver/blocked_identifiers, silver/member_id_history, silver/member_id_changes.

Everything is computed and checked (circuit breaker) before the first table is
written. Intermediate results are materialised as Parquet under
``<work>/identity/<run_id>`` so each query plan stays small; the folder is removed
after a successful run.

Incremental nights (``incremental: true`` in conf/identity.yaml, the default): the POS
and web contributions to the graph are kept per business date (jobs.identity.state) and
only the dates whose bronze files changed since the last run are read again; CRM is
re-read in full (small). The graph is then diffed against the previous run's
silver/identity_edges and silver/member_xref: only the components touched by an added or
removed edge or identity are re-clustered and re-assigned, every other identity keeps
its row (bar first/last seen). Member-id rules are the same code as the full path, so
the result is identical. Golden records are recomputed only for the members whose
inputs a night can change (``_golden_scope``), and every identity table gets only its
changed rows in one MERGE (jobs.identity.sync): a night that changes no identity
commits nothing to them. The full recompute runs when the switch is off, on the first
run, for a backfill (as_of before the last run), when the configuration or PII key
changed, or when the silver identity tables are not at the versions the last run left
(a crash in the middle, an erasure, a compaction). A rerun of the last date on unchanged
bronze is a no-op.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import lake_state, storage
from jobs.context import RunContext
from jobs.identity import normalize as N
from jobs.identity.assign import assign_member_ids, check_circuit_breaker, new_member_id
from jobs.identity.chains import CHAIN_TABLES, ChainCheck, load_previous
from jobs.identity.components import connected_components
from jobs.identity.conf import IdentityConf, load_identity_conf
from jobs.identity.counts import row_counts
from jobs.identity.golden import golden_records
from jobs.identity.graph import (
    MEMBER_SOURCES,
    build_graph,
    latest_crm_versions,
    links_from_parts,
    orders_from_parts,
    pos_order_parts,
    web_identity_parts,
    web_ids_from_parts,
    web_link_parts,
)
from jobs.identity.second import SECOND_TABLES, SecondPass, SecondPrevious, read_junk_pairs
from jobs.identity.setops import NEW, added_or_removed, sided_difference, symmetric_difference
from jobs.identity.state import (
    LINK_PARTS,
    PART_TABLES,
    POS_PARTS,
    WEB_ID_PARTS,
    IdentityState,
    Snapshot,
    bronze_for,
    bronze_snapshot,
    conf_fingerprint,
    load_state,
    save_state,
    touched_dates,
    write_parts,
)
from jobs.identity.sync import (
    changed_members,
    changes_of,
    members_of_keys,
    row_changes,
    row_diff,
)
from jobs.lake import Lake, parquet_materialiser
from jobs.laps import Laps, timed_materialiser
from jobs.privacy.pii import hmac_col
from jobs.schemas import table_schema

log = logging.getLogger(__name__)

ACCEPT_ENV = "CDP_IDENTITY_ACCEPT_CHANGES"
XREF = "silver/member_xref"
MEMBERS = "silver/members"
PII = "restricted/member_pii"
EDGES = "silver/identity_edges"
HISTORY = "silver/member_id_history"
CHANGE_TYPES = ("merge", "split", "dissolved")


class NodeIdCollision(RuntimeError):
    pass


def _node(source: F.Column, key: F.Column) -> F.Column:
    return F.concat(source, F.lit(":"), key)


def node_ids(identities: DataFrame, edges: DataFrame) -> DataFrame:
    """Every graph node with a 64-bit id (xxhash64 of ``source:key``).

    Output grain: one node; columns node (string), id (long).
    """
    ends = (
        identities.select(_node(F.col("source"), F.col("key")).alias("node"))
        .unionByName(edges.select(_node(F.col("src_source"), F.col("src_key")).alias("node")))
        .unionByName(edges.select(_node(F.col("dst_source"), F.col("dst_key")).alias("node")))
        .distinct()
    )
    return ends.withColumn("id", F.xxhash64("node"))


def cluster_identities(identities: DataFrame, labels: DataFrame) -> DataFrame:
    """Attach the component to each identity; name it by its smallest identity node and
    mark whether it may be a member (holds a CRM record, card, web account or valid,
    unblocked phone).

    Inputs: identities (one source identity), labels (one node: id, component).
    Output grain: one source identity; source, source_key, node, cluster_id, eligible,
    blocked, first_seen, last_seen.
    """
    ids = identities.withColumn("node", _node(F.col("source"), F.col("key"))).withColumn(
        "id", F.xxhash64("node")
    )
    j = ids.join(labels, "id")
    eligible_row = F.col("source").isin(*MEMBER_SOURCES) & ~F.col("blocked")
    per = j.groupBy("component").agg(
        F.min("node").alias("cluster_id"),
        F.max(eligible_row.cast("int")).alias("eligible"),
    )
    return j.join(per, "component").select(
        "source",
        F.col("key").alias("source_key"),
        "node",
        "cluster_id",
        (F.col("eligible") == 1).alias("eligible"),
        "blocked",
        "first_seen",
        "last_seen",
    )


def choose_mode(
    lake, conf: IdentityConf, st: IdentityState | None, d, fingerprint: str, snap: Snapshot
) -> tuple[str, str]:
    """``full``, ``incremental`` or ``noop`` (a rerun of the last date on unchanged
    bronze), with why."""
    if not conf.incremental:
        return "full", "incremental off"
    if st is None:
        return "full", "no state"
    if d < st.as_of:
        return "full", f"backfill (last run {st.as_of})"
    if st.fingerprint != fingerprint:
        return "full", "configuration, key or rules version changed"
    if not all(lake.exists(t) for t in (*PART_TABLES, "silver/member_xref")):
        return "full", "state tables missing"
    if not lake.exists("silver/identity_edges"):
        return "full", "state tables missing"
    versions = (lake.version("silver/member_xref"), lake.version("silver/identity_edges"))
    if versions != (st.xref_version, st.edges_version):
        return "full", "silver identity tables changed since the last run"
    if {t: lake.version(t) for t in PART_TABLES} != st.parts_versions:
        return "full", "identity parts changed since the last run (a failed run)"
    if d == st.as_of and snap == st.snapshot:
        return "noop", "same date, no bronze change"
    return "incremental", "ok"


EDGE_ENDS = ["src_source", "src_key", "dst_source", "dst_key"]


def _touched_subgraph(
    identities: DataFrame,
    edges: DataFrame,
    changed: DataFrame,
    previous: DataFrame,
    prev_edges: DataFrame,
    mat,
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """The part of the graph that changed since the previous run.

    Touched nodes: ends of edges added or removed, identities added, removed or newly
    (un)blocked, and the previous neighbours of any of them (so an e-mail or ID-card
    node, which has no xref row, brings its old component along). Touched clusters:
    their previous clusters. Every other previous cluster keeps exactly its nodes and
    edges, hence its component and member id.

    Nodes stay (source, key) pairs throughout: at 1M members, building the ``source:key``
    text of every edge's two ends to compare them cost 10 s of the 2.5 s the comparison
    of the plain columns costs.

    ``changed``: the edges added or removed since the previous run (EDGE_ENDS), from
    the comparison with silver/identity_edges that also gives the table's row changes
    (one comparison of every edge, not two).

    Output: (touched cluster ids, touched nodes (source, key), the current edges with an
    end among the touched nodes, the identities only seen on other dates (source, key):
    see :func:`identity_changes`). Every current edge with one end touched has both ends
    touched: an unchanged edge joins two nodes of one previous cluster.
    """
    prev_x = previous.withColumnRenamed("source_key", "key")
    changed_i, seen_moved = identity_changes(identities, prev_x, mat)
    seeds = mat(
        changed.select(F.explode(F.array(_end("src"), _end("dst"))).alias("n"))
        .select("n.source", "n.key")
        .unionByName(changed_i)
        .distinct(),
        "inc_seeds",
    )
    prev_pairs = prev_edges.select(*EDGE_ENDS)
    near = _ends_in(prev_pairs, seeds, "src", "dst").unionByName(
        _ends_in(prev_pairs, seeds, "dst", "src")
    )
    clusters = mat(
        prev_x.join(seeds.unionByName(near), ["source", "key"], "left_semi")
        .select("cluster_id")
        .distinct(),
        "inc_clusters",
    )
    # Materialised, like the edges below: few rows, but each is read by the
    # clustering, the node ids and the counts, and a read would scan the whole xref
    # (or every edge) again.
    nodes = mat(
        prev_x.join(clusters, "cluster_id", "left_semi")
        .select("source", "key")
        .unionByName(seeds)
        .distinct(),
        "inc_nodes",
    )
    sub = mat(
        _ends_in(edges, nodes, "src").unionByName(_ends_in(edges, nodes, "dst")).distinct(),
        "inc_edges",
    )
    return clusters, nodes, sub, seen_moved


IDENTITY_STATE = ["source", "key", "blocked", "first_seen", "last_seen"]


def identity_changes(
    identities: DataFrame, previous: DataFrame, mat
) -> tuple[DataFrame, DataFrame]:
    """(identities added, removed or newly (un)blocked, one (source, key); identities whose
    first or last seen date alone moved, one (source, key) with those dates as they are
    now), from one comparison of every identity with the previous run's xref rows
    (``previous``: source, key, blocked, first_seen, last_seen).

    The first are seeds of the touched subgraph. The second keep their member, cluster
    and blocking; only their xref row's dates change, so they are all the xref compares
    outside the touched clusters (at 1M members a night compared all 4.7M xref rows
    again for that: 3.4 s; at 5M, 23.6M rows: 46 s).
    """
    diff = mat(
        sided_difference(identities.select(*IDENTITY_STATE), previous.select(*IDENTITY_STATE)),
        "inc_identity_diff",
    )
    # An identity has at most one row a side: two rows are a change, one an addition or
    # a removal.
    per = diff.groupBy("source", "key").agg(
        F.count(F.lit(1)).alias("rows"),
        F.min(F.col("blocked").cast("int")).alias("lo"),
        F.max(F.col("blocked").cast("int")).alias("hi"),
    )
    same_blocking = (F.col("rows") == 2) & F.col("lo").eqNullSafe(F.col("hi"))
    seeds = per.filter(~same_blocking).select("source", "key")
    moved = per.filter(same_blocking).select("source", "key")
    now = diff.filter(F.col(NEW)).select("source", "key", "first_seen", "last_seen")
    return seeds, now.join(moved, ["source", "key"], "left_semi")


def _end(side: str) -> F.Column:
    """An edge's ``side`` end (src or dst) as a struct (source, key)."""
    return F.struct(F.col(f"{side}_source").alias("source"), F.col(f"{side}_key").alias("key"))


def _ends_in(edges: DataFrame, nodes: DataFrame, side: str, other: str | None = None) -> DataFrame:
    """``edges`` whose ``side`` end is among ``nodes`` (source, key); with ``other``,
    that other end of each as (source, key) instead."""
    found = edges.join(
        nodes.select(F.col("source").alias(f"{side}_source"), F.col("key").alias(f"{side}_key")),
        [f"{side}_source", f"{side}_key"],
        "left_semi",
    )
    if other is None:
        return found
    return found.select(
        F.col(f"{other}_source").alias("source"), F.col(f"{other}_key").alias("key")
    )


def _update_parts(ctx: RunContext, conf: IdentityConf, snap: Snapshot, st, mode: str) -> dict:
    """Bring the per-date parts up to date: all of them (full) or the touched dates."""
    lake, d, key = ctx.lake, ctx.as_of, ctx.pii_key
    touched: dict[str, list[str] | None] = {}
    for table in ("bronze/pos_lines", "bronze/web_events"):
        touched[table] = None if mode == "full" else touched_dates(st.snapshot, snap, table)
    pos_dates, web_dates = touched["bronze/pos_lines"], touched["bronze/web_events"]
    if pos_dates is None or pos_dates:
        pos = bronze_for(lake, "bronze/pos_lines", d, pos_dates)
        write_parts(lake, pos_order_parts(pos, key), POS_PARTS, pos_dates)
    if web_dates is None or web_dates:
        web = bronze_for(lake, "bronze/web_events", d, web_dates)
        write_parts(lake, web_link_parts(web, conf), LINK_PARTS, web_dates)
        write_parts(lake, web_identity_parts(web), WEB_ID_PARTS, web_dates)
    return {t.split("/")[1]: ("all" if v is None else len(v)) for t, v in touched.items()}


def _current(lake: Lake, name: str) -> DataFrame | None:
    """Table ``name`` to compare this run's rows with; None when it holds no row (a
    first run: every row is new, and grouping millions of rows to find that out cost
    2-4 s a table at 1M members)."""
    return lake.read(name) if lake.holds_rows(name) else None


def _apply(lake: Lake, changes: DataFrame, name: str, n: int) -> int:
    """Merge the materialised row changes (``n`` rows) into ``name``; no commit when
    there are none. Returns the rows changed."""
    if n or not lake.exists(name):
        lake.apply_changes(changes, name, rows=n)
    return n


def _new_dates_only(st: IdentityState, table: str, dates: list[str] | None) -> bool:
    """Whether the touched dates of ``table`` are all dates the last run never saw (a
    new day, no re-sent or erased one): then only their rows can change a member."""
    if dates is None:
        return False
    seen = st.snapshot.get(table, {})
    return not any(x in seen for x in dates)


def _golden_scope(
    lake: Lake,
    st: IdentityState,
    snap: Snapshot,
    crm: DataFrame,
    xref: DataFrame,
    xref_changes: DataFrame,
    previous: DataFrame,
    blocked_phones: DataFrame,
    key: bytes,
) -> DataFrame | None:
    """Members whose golden record may differ from the last run's (incremental nights).

    A golden record reads the member's xref rows, the versions of its CRM records, the
    POS orders of its phone keys and whether its CRM phones are blocked; so: members
    with a changed xref row (before or after), members holding a CRM record or phone
    key with rows on a touched business date, and members with a CRM phone whose
    blocking changed. A touched date the last run had already seen (a re-sent file)
    puts every member in scope (None). Output grain: one member_id.
    """
    crm_dates = touched_dates(st.snapshot, snap, "bronze/crm_members")
    pos_dates = touched_dates(st.snapshot, snap, "bronze/pos_lines")
    if not (
        _new_dates_only(st, "bronze/crm_members", crm_dates)
        and _new_dates_only(st, "bronze/pos_lines", pos_dates)
    ):
        return None
    parts = [changed_members(xref_changes, previous)]
    if crm_dates:
        on_dates = F.col("_business_date").isin(*[dt.date.fromisoformat(x) for x in crm_dates])
        crm_keys = crm.filter(on_dates).select(F.col("crm_key").alias("source_key"))
        parts.append(members_of_keys(xref, "crm", crm_keys))
    if pos_dates:
        on_dates = F.col("_business_date").isin(*[dt.date.fromisoformat(x) for x in pos_dates])
        phone_keys = (
            lake.read(POS_PARTS).filter(on_dates).select(F.col("dst_key").alias("source_key"))
        )
        parts.append(members_of_keys(xref, "pos_phone", phone_keys))
    was = (
        lake.read("silver/blocked_identifiers")
        .filter((F.col("as_of_date") == F.lit(st.as_of)) & (F.col("id_type") == "phone"))
        .select(F.col("value_hash").alias("key"))
    )
    flipped = symmetric_difference(blocked_phones, was)
    crm_phone_key = hmac_col(N.norm_phone(F.col("phone")), key)
    flipped_crm = (
        crm.withColumn("key", crm_phone_key)
        .join(flipped, "key", "left_semi")
        .select(F.col("crm_key").alias("source_key"))
    )
    parts.append(members_of_keys(xref, "crm", flipped_crm))
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out.distinct()


def _chain_check(
    lake: Lake, st: IdentityState | None, snap: Snapshot, crm: DataFrame, mode: str
) -> ChainCheck:
    """The never-link chain check of this run: of the touched components only on an
    incremental night that finds the chain state the last run left and no CRM date
    re-sent or erased (a changed profile is then found by its new version); of every
    component otherwise. ``crm``: CRM row versions with ``crm_key``."""
    if mode != "incremental" or st is None or not st.chain_versions:
        return ChainCheck(None)
    if not all(lake.exists(t) for t in CHAIN_TABLES):
        return ChainCheck(None)
    if {t: lake.version(t) for t in CHAIN_TABLES} != st.chain_versions:
        return ChainCheck(None)
    crm_dates = touched_dates(st.snapshot, snap, "bronze/crm_members")
    if not _new_dates_only(st, "bronze/crm_members", crm_dates):
        return ChainCheck(None)
    on_dates = (
        F.col("_business_date").isin(*[dt.date.fromisoformat(x) for x in crm_dates])
        if crm_dates
        else F.lit(False)
    )
    return ChainCheck(load_previous(lake, EDGES, crm.filter(on_dates).select("crm_key")))


def _second_pass(
    lake: Lake, st: IdentityState | None, chains: ChainCheck, crm: DataFrame, key: bytes
) -> SecondPass:
    """The second pass of this run: over the touched records only when the chain check
    is incremental (same conditions: no CRM date re-sent or erased, the chain state at
    its versions) and the junk pairs are at the version the last run left; over every
    record otherwise. ``crm``: CRM row versions with ``crm_key``."""
    prev = chains.previous
    if st is None or prev is None:
        return SecondPass(None, key, "no incremental chain check")
    versions = {t: lake.version(t) for t in SECOND_TABLES if lake.exists(t)}
    if versions != st.second_versions or not versions:
        return SecondPass(None, key, "junk-pair state missing or changed")
    previous = SecondPrevious(
        edges=prev.edges,
        junk_pairs=read_junk_pairs(lake),
        new_crm=prev.crm_seeds,
        crm_before=crm.filter(F.col("_business_date") <= F.lit(st.as_of)),
    )
    return SecondPass(previous, key, "ok")


def resolve(ctx: RunContext, conf: IdentityConf | None = None) -> dict:
    """Compute everything; write the silver tables only when the breaker lets it."""
    conf = conf or load_identity_conf()
    d = ctx.as_of
    lake = ctx.lake
    key = ctx.pii_key
    t0 = time.perf_counter()
    st = load_state(lake)
    snap = bronze_snapshot(lake, d)
    # Settings that change how, not what, is computed (the breaker, the switch, where
    # the components are solved) leave the state valid.
    fingerprint = conf_fingerprint(
        conf.model_dump_json(exclude={"circuit_breaker", "incremental", "components"}), key
    )
    mode, why = choose_mode(lake, conf, st, d, fingerprint, snap)
    log.info("identity %s: %s run (%s)", d, mode, why)
    if mode == "noop":
        assert st is not None
        # The figures of the run that wrote the tables, but this run changed nothing.
        return {**st.figures, "merges": 0, "splits": 0, "dissolved": 0, "mode": mode,
                "mode_reason": why, "seconds_total": round(time.perf_counter() - t0, 3)}  # fmt: skip

    base = lake_state.scratch_dir(ctx.settings.paths.lake, "identity", ctx.run_id)
    try:
        return _resolve_with_scratch(ctx, conf, st, snap, (mode, why), fingerprint, t0, base)
    finally:
        # Removed whatever happens: a failed run left 3.5 GB at 5M members (CRM rows too).
        storage.remove_tree(base)


def _resolve_with_scratch(
    ctx: RunContext,
    conf: IdentityConf,
    st: IdentityState | None,
    snap: Snapshot,
    mode_why: tuple[str, str],
    fingerprint: str,
    t0: float,
    base: str,
) -> dict:
    """:func:`resolve` past its choice of mode, its intermediates under ``base``."""
    mode, why = mode_why
    d, lake, key = ctx.as_of, ctx.lake, ctx.pii_key
    stages = Laps()
    mat = timed_materialiser(parquet_materialiser(base), stages)
    touched = _update_parts(ctx, conf, snap, st, mode)
    stages("parts")
    crm = lake.read("bronze/crm_members").filter(F.col("_business_date") <= F.lit(d))
    # Flagged once: graph, identities, second pass and golden records all need it.
    crm = mat(latest_crm_versions(crm), "crm_latest")
    upto = F.col("_business_date") <= F.lit(d)
    orders = mat(orders_from_parts(lake.read(POS_PARTS).filter(upto), key), "pos_orders")
    links = links_from_parts(lake.read(LINK_PARTS).filter(upto))
    web_ids = web_ids_from_parts(lake.read(WEB_ID_PARTS).filter(upto))
    t_parts = time.perf_counter() - t0

    chains = _chain_check(lake, st, snap, crm, mode)
    second = _second_pass(lake, st, chains, crm, key)
    g = build_graph(ctx.spark, crm, orders, links, web_ids, conf, key, mat, chains, second)
    identities = mat(g.identities, "identities")
    # Materialised: the kept edges less the refused ones are read by the night's diff,
    # the touched subgraph, the comparison with silver/identity_edges and the counts; each
    # read joined millions of edges again (at 1M members, 4.5M edges: 20 s a read).
    edges = mat(g.edges, "edges")
    # One comparison with silver/identity_edges: the night's seeds (edges added or
    # removed) and the table's row changes both come from it.
    edges_diff = mat(row_diff(edges, _current(lake, EDGES), EDGES), "edges_diff")
    # Not materialised: a projection of the materialised blocked values.
    blocked = g.blocked
    t_graph = time.perf_counter() - t0

    previous = lake.read("silver/member_xref")
    untouched = xref_scope = None
    if mode == "incremental":
        prev_edges = lake.read("silver/identity_edges")
        changed = added_or_removed(edges_diff, list(table_schema(EDGES).keys)).select(*EDGE_ENDS)
        clusters, sub_nodes, sub_edges, seen_moved = _touched_subgraph(
            identities, edges, changed, previous, prev_edges, mat
        )
        # Materialised: read by the node ids, the clustering and the counts, each a scan
        # of every identity otherwise.
        cc_identities = mat(identities.join(sub_nodes, ["source", "key"], "left_semi"),
                            "inc_identities")  # fmt: skip
        cc_edges = sub_edges
        # Untouched clusters keep their rows; only the dates they were seen move on, for
        # the identities seen_moved names (tens of thousands on a 1M night: every other
        # identity of those clusters is as the previous run left it). Joined to those
        # instead of to every identity: 4.7M rows less to join each night at 1M members.
        moved = seen_moved.select(
            "source",
            F.col("key").alias("source_key"),
            F.col("first_seen").alias("_first_seen"),
            F.col("last_seen").alias("_last_seen"),
        )
        untouched = (
            previous.join(clusters, "cluster_id", "left_anti")
            .join(F.broadcast(moved), ["source", "source_key"], "left")
            .withColumn("first_seen", F.coalesce("_first_seen", "first_seen"))
            .withColumn("last_seen", F.coalesce("_last_seen", "last_seen"))
            .drop("_first_seen", "_last_seen")
        )
        # Materialised: the id assignment reads the touched clusters' previous rows
        # several times, each a scan of the whole xref otherwise.
        prev_for_assign = mat(previous.join(clusters, "cluster_id", "left_semi"),
                              "inc_previous")  # fmt: skip
        # The xref rows that can differ from the table's: the touched clusters' rows,
        # before and after, and the identities only seen on other dates.
        xref_scope = (
            prev_for_assign.select("source", "source_key")
            .unionByName(cc_identities.select("source", F.col("key").alias("source_key")))
            .unionByName(seen_moved.select("source", F.col("key").alias("source_key")))
        )
    else:
        cc_identities, cc_edges, prev_for_assign = identities, edges, previous

    # Collisions are counted with the run's other figures, before anything is written.
    nodes = node_ids(cc_identities, cc_edges)
    if untouched is None:
        # Written once on a full run: the labels, the clustering and the counts each read
        # every node (4.7M identities and both ends of 4.5M edges, made distinct); at 1M
        # members clustering took 14.4 s with the nodes inlined, 3.0 + 6.4 s so, and the
        # counts of nodes and collisions 3.2 -> 0.2 s. A night's touched subgraph is small.
        nodes = mat(nodes, "cc_nodes")
    e = cc_edges.select(
        F.xxhash64(_node(F.col("src_source"), F.col("src_key"))).alias("src"),
        F.xxhash64(_node(F.col("dst_source"), F.col("dst_key"))).alias("dst"),
    )
    # A full run's chain check clustered the graph before refusal: its labels hold but
    # in the components that lost an edge (1M members: cc_local 13-16 s otherwise).
    reused = chains.labels_after_refusal(nodes, cc_edges, mat, conf) if untouched is None else None
    labels, cc = reused or connected_components(
        nodes, e, mat, conf.components.max_rounds, conf.components.local_max_edges
    )
    clustered = mat(cluster_identities(cc_identities, labels), "clustered")

    history = lake.read("silver/member_id_history")
    used = previous.select("member_id").unionByName(history.select("member_id"))
    if untouched is not None:
        # A new id is new_member_id(node) of a clustered node: only such ids can be taken.
        # The night's few are broadcast, so every id ever used is streamed past them
        # instead of grouped (twice) at each read.
        plain = cc_identities.select(
            new_member_id(_node(F.col("source"), F.col("key"))).alias("member_id")
        )
        used = used.join(F.broadcast(plain), "member_id", "left_semi")
    # A full run writes the assignment's big intermediates once; a night's are small.
    assigned, changes = assign_member_ids(
        clustered, prev_for_assign, used, d, mat if untouched is None else None
    )
    # ``changes`` materialised: a few rows, but its plan joins the previous xref and every
    # member id ever used, and the counts read it four times (all, and per change type).
    # ``assigned`` is not: the xref below is its one reader.
    changes = mat(changes, "changes")

    xref_cols = [
        "source",
        "source_key",
        "member_id",
        "cluster_id",
        "member_id_assigned",
        "blocked",
        "first_seen",
        "last_seen",
    ]
    xref = assigned.select(*xref_cols)
    if untouched is not None:
        xref = xref.unionByName(untouched.select(*xref_cols))
    # Materialised: the rows are compared with the table this run then merges into.
    xref = mat(xref, "xref")
    if untouched is None:
        xref_changes = row_changes(xref, _current(lake, XREF), XREF, d, materialise=mat)
    else:
        # Every other row is the table's as it stands (see identity_changes). Not
        # materialised: a union of three written results, read twice.
        scope = xref_scope.distinct()
        in_scope = xref.join(scope, ["source", "source_key"], "left_semi")
        xref_changes = row_changes(in_scope, lake.read(XREF), XREF, d, scope, mat)
    xref_changes = mat(xref_changes, "xref_changes")
    phones = orders.filter(F.col("phone").isNotNull()).select("order_id", "phone", "order_ts",
                                                               "phone_key")  # fmt: skip
    blocked_phones = blocked.filter(F.col("id_type") == "phone").select(
        F.col("value_hash").alias("key")
    )
    scope = None
    if mode == "incremental":
        scope = _golden_scope(
            lake, st, snap, crm, xref, xref_changes, previous, blocked_phones, key
        )
    golden_xref = xref
    if scope is not None:
        scope = mat(scope, "golden_scope")
        golden_xref = xref.join(scope, "member_id", "left_semi")
    members, pii = golden_records(crm, golden_xref, phones, blocked_phones, key, d, mat)

    reason = (
        F.when(F.col("change_type") == "merge", F.concat(F.lit("merge: cluster "), "cluster_id"))
        .when(F.col("change_type") == "split", F.concat(F.lit("split: part "), "cluster_id"))
        .otherwise(F.lit("dissolved: no member identity left"))
    )
    change_rows = changes.select(
        "old_member_id", "new_member_id", "change_type", F.lit(d).alias("as_of_date"),
        reason.alias("reason"),
    )  # fmt: skip
    history_rows = changes.filter(F.col("change_type") != "split").select(
        F.col("old_member_id").alias("member_id"),
        F.col("new_member_id").alias("merged_into"),
        F.lit(d).alias("as_of_date"),
        reason.alias("reason"),
    )
    # Each table's difference is materialised (its rows to write are read twice: counted,
    # then merged; each a few joins of that small result, not a new comparison).
    table_changes = {
        MEMBERS: row_changes(members, _current(lake, MEMBERS), MEMBERS, d, scope, mat),
        PII: row_changes(pii, _current(lake, PII), PII, d, scope, mat),
        EDGES: changes_of(edges_diff, EDGES, d),
        XREF: xref_changes,
    }
    # Every count the run needs, in one query (each action costs ~0.5 s on a JVM).
    counted = {
        "existing_members": previous.filter(F.col("member_id").isNotNull())
        .select("member_id")
        .distinct(),
        "changes": changes,
        **{t: changes.filter(F.col("change_type") == t) for t in CHANGE_TYPES},
        **table_changes,
        "rows_in": identities,
        # The xref table holds exactly ``xref`` once its changes are applied.
        "rows_out": xref,
        "members": xref.filter(F.col("member_id").isNotNull()).select("member_id").distinct(),
        "edges": edges,
        "blocked_values": blocked,
        "superseded_edges": g.superseded,
        "refused_merges": g.refused,
        "refused_merges_cap": g.refused_cap,
        "cc_nodes": nodes,
        "collisions": nodes.groupBy("id").agg(F.count(F.lit(1)).alias("n")).filter("n > 1"),
    }
    if scope is not None:
        counted["golden_members"] = scope
    if chains.labels is not None:
        counted["chain_nodes_checked"] = chains.labels
        counted.update(chains.to_count(lake))
    if conf.second_pass.enabled:
        counted.update(second.to_count(lake))
    n = row_counts(counted)
    stages("counts")
    if n["collisions"]:
        raise NodeIdCollision(f"{n['collisions']} xxhash64 collisions among identity nodes")
    br = conf.circuit_breaker
    if br.enabled and not os.environ.get(ACCEPT_ENV):
        breaker = check_circuit_breaker(
            changes, n["existing_members"], br.max_change_share, br.min_changes,
            br.report_top, n_changes=n["changes"],
        )  # fmt: skip
    else:
        breaker = {"existing_members": n["existing_members"], "changes": n["changes"],
                   "skipped": True}  # fmt: skip

    # Writes: the log of changes first (idempotent merges), the xref (next run's
    # baseline) last. Only changed rows are written; an unchanged table gets no commit.
    if n["changes"] or not lake.exists(HISTORY):
        lake.merge(
            change_rows,
            "silver/member_id_changes",
            ["old_member_id", "new_member_id", "as_of_date"],
        )
        lake.merge(history_rows, HISTORY, ["member_id"], update=False)
    stages("write_id_changes")
    rows_changed = {}
    # The writes are timed too (``write_<table>``): on a night they are whole-table
    # commits whatever the rows changed (Lake.apply_changes).
    for name in (MEMBERS, PII, EDGES):
        rows_changed[name] = _apply(lake, table_changes[name], name, n[name])
        stages(f"write_{name.rsplit('/', 1)[-1]}")
    lake.replace_where(
        blocked.withColumn("as_of_date", F.lit(d)),
        "silver/blocked_identifiers",
        f"as_of_date = '{d.isoformat()}'",
    )
    stages("write_blocked_identifiers")
    chain_rows = chains.save(lake, n) if chains.labels is not None else {}
    second_rows = second.save(lake, n) if conf.second_pass.enabled else {}
    stages("write_pass_states")
    rows_changed[XREF] = _apply(lake, xref_changes, XREF, n[XREF])
    stages("write_member_xref")

    figures = {
        **{f: n[f] for f in ("rows_in", "rows_out", "members", "edges", "blocked_values")},
        **{f: n[f] for f in ("superseded_edges", "refused_merges", "refused_merges_cap")},
        "merges": n["merge"],
        "splits": n["split"],
        "dissolved": n["dissolved"],
        "existing_members": n["existing_members"],
        "breaker": breaker,
        "cc_rounds": cc.rounds,
        "cc_seconds": round(cc.seconds, 3),
        "cc_unconverged_per_round": cc.edges_per_round,
        "mode": mode,
        "mode_reason": why,
        "touched_dates": touched,
        "rows_changed": rows_changed,
        "golden_members": n.get("golden_members", "all"),
        "chain_check": "all" if chains.previous is None else "touched",
        "chain_nodes_checked": n.get("chain_nodes_checked"),
        "chain_rows_changed": chain_rows,
        **(second.figures(n) if conf.second_pass.enabled else {}),
        "second_rows_changed": second_rows,
        "cc_nodes": n["cc_nodes"],
        "stage_seconds": stages.seconds,
        "parts_seconds": round(t_parts, 3),
        "graph_seconds": round(t_graph, 3),
        "seconds_total": round(time.perf_counter() - t0, 3),
    }
    # Last: the next run trusts the silver tables only at the versions named here.
    save_state(
        lake,
        IdentityState(
            as_of=d,
            run_id=ctx.run_id,
            fingerprint=fingerprint,
            snapshot=snap,
            xref_version=lake.version("silver/member_xref"),
            edges_version=lake.version("silver/identity_edges"),
            figures=figures,
            parts_versions={t: lake.version(t) for t in PART_TABLES},
            chain_versions={t: lake.version(t) for t in chain_rows},
            second_versions={t: lake.version(t) for t in second_rows},
        ),
    )
    log.info("identity %s: %s", d, figures)
    return figures


def run(ctx: RunContext) -> dict:
    """Pipeline step: identity resolution as of ``ctx.as_of``."""
    return resolve(ctx)
