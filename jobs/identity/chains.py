"""The never-link chain check and the fuzzy cluster cap, kept as state so that a night
checks only the components its changes touch (issue 17, item 1).

The check (jobs.identity.graph.refuse_never_link_chains) clusters the graph of kept
edges before refusal (the *pre-refusal graph*), finds the components that may hold two
records the never-link rules keep apart or more CRM records than the fuzzy cap allows,
and re-clusters those on the driver, refusing edges. A component's refusals depend only
on its own edges (with their rule and confidence), the profiles of its CRM records and
the configuration, so a component that none of these changed keeps last run's refusals.

State (written by the identity step, versions recorded in meta/identity_state):

* ``meta/identity_components`` (one node id of the pre-refusal graph): its component,
  the smallest node id in it (xxhash64 of ``source:key``, as jobs.identity.graph.node_id).
* ``meta/identity_refused`` (one refused edge): EDGE_COLUMNS and ``by_cap``.

Last run's pre-refusal edges are silver/identity_edges plus meta/identity_refused. A
night's *seeds* are the ends of every edge added or removed (or whose rule or confidence
changed) and the CRM records with a version on a touched business date; the touched
components are the previous components of the seeds; their nodes and the seeds span a
subgraph closed under the current edges (an unchanged edge joins two nodes of one
previous component), which alone is clustered and checked. The labels are the smallest
node id of each component either way, so the state equals what a full check writes.

A full run clusters the graph once more after refusal (jobs.identity.job); it takes the
full check's labels but in the components that lost an edge
(:meth:`ChainCheck.labels_after_refusal`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.identity.components import CCStats, connected_components, label_nodes
from jobs.identity.conf import IdentityConf
from jobs.identity.counts import row_counts
from jobs.identity.graph import (
    EDGE_COLUMNS,
    EDGE_KEYS,
    conflicting_components,
    node_id,
    refuse_in_components,
    without_edges,
)
from jobs.identity.setops import symmetric_difference
from jobs.lake import Lake, Materialise

COMPONENTS = "meta/identity_components"
REFUSED = "meta/identity_refused"
CHAIN_TABLES = (COMPONENTS, REFUSED)


@dataclass
class ChainPrevious:
    """What the last run left, for an incremental check."""

    components: DataFrame  # one node id: id, component
    edges: DataFrame  # one pre-refusal edge of the last run: EDGE_COLUMNS
    refused: DataFrame  # one edge the last run refused: EDGE_COLUMNS, by_cap
    crm_seeds: DataFrame  # one CRM record whose profile may have changed: crm_key


def load_previous(lake: Lake, silver_edges: str, crm_seeds: DataFrame) -> ChainPrevious:
    """The last run's chain state (the caller has checked the table versions)."""
    refused = lake.read(REFUSED)
    edges = lake.read(silver_edges).select(*EDGE_COLUMNS)
    return ChainPrevious(
        components=lake.read(COMPONENTS),
        edges=edges.unionByName(refused.select(*EDGE_COLUMNS)),
        refused=refused,
        crm_seeds=crm_seeds,
    )


def _edge_ids(edges: DataFrame) -> DataFrame:
    """One edge as (src, dst) node ids with what decides its fate (rule, confidence).

    Distinct before hashing: a DISTINCT over the hashes of a Delta scan panics in Sail
    0.7.2 ("Trying to access an element at index 1 from a StringArray of length 1")."""
    cols = ["src_source", "src_key", "dst_source", "dst_key", "rule", "confidence"]
    return (
        edges.select(*cols)
        .distinct()
        .select(
            node_id(F.col("src_source"), F.col("src_key")).alias("src"),
            node_id(F.col("dst_source"), F.col("dst_key")).alias("dst"),
            "rule",
            "confidence",
        )
    )


def touched_nodes(edges: DataFrame, prev: ChainPrevious, mat: Materialise) -> DataFrame:
    """Node ids whose component must be checked again: the seeds (ends of added, removed
    or altered edges; CRM records with a new version) and every node of a previous
    component holding one. Input: the current pre-refusal edges (EDGE_COLUMNS).
    Output grain: one node id (``id``)."""
    # Compared on their plain columns, hashed after: at 1M members hashing every edge's
    # two ends before the comparison cost 10 s more than the comparison itself.
    cols = ["src_source", "src_key", "dst_source", "dst_key", "rule", "confidence"]
    # Materialised before hashing: the same query with the difference inlined took
    # 9.5 s at 1M members (a night), against 2.6 s for the difference alone and 0.2 s for
    # the rest.
    diff = mat(symmetric_difference(edges.select(*cols), prev.edges.select(*cols)), "chain_diff")
    changed = _edge_ids(diff)
    crm = prev.crm_seeds.select(node_id(F.lit("crm"), F.col("crm_key")).alias("id"))
    # Both ends from one read of ``changed`` (each read is a read of every edge).
    ends = changed.select(F.explode(F.array("src", "dst")).alias("id"))
    seeds = ends.unionByName(crm).distinct()
    touched = prev.components.join(seeds, "id", "left_semi").select("component").distinct()
    members = prev.components.join(touched, "component", "left_semi").select("id")
    return mat(members.unionByName(seeds).distinct(), "chain_nodes")


class ChainCheck:
    """``refuse_chains`` for jobs.identity.graph.build_graph: the full check when there is
    no previous state, else the check of the touched components only. Keeps the labels
    and refusals it found so that :meth:`save` can write the state afterwards."""

    def __init__(self, previous: ChainPrevious | None) -> None:
        self.previous = previous
        self.labels: DataFrame | None = None  # one node id checked: id, component
        self.scope: DataFrame | None = None  # node ids checked (None: all)
        self.refused: DataFrame | None = None  # EDGE_COLUMNS, by_cap

    def __call__(
        self, edges: DataFrame, profiles: DataFrame, conf: IdentityConf, mat: Materialise
    ) -> tuple[DataFrame, DataFrame, DataFrame]:
        """(kept edges, refused edges, refused by the cap), as refuse_never_link_chains."""
        sub = edges
        if self.previous is not None:
            self.scope = touched_nodes(edges, self.previous, mat)
            src = node_id(F.col("src_source"), F.col("src_key"))
            scope_src = self.scope.select(F.col("id").alias("src_id"))
            # A semi-join of two materialised results: cheap to read again, no Parquet.
            sub = (
                edges.withColumn("src_id", src).join(scope_src, "src_id", "left_semi")
                .drop("src_id")
            )  # fmt: skip
        labels, conflicting = conflicting_components(sub, profiles, conf, mat)
        refused, by_cap = refuse_in_components(sub, labels, conflicting, profiles, conf, mat)
        self.labels = labels  # the caller counts the checked nodes with its other figures
        flagged = (
            refused.join(by_cap.select(*EDGE_KEYS), EDGE_KEYS, "left_anti")
            .withColumn("by_cap", F.lit(False))
            .unionByName(by_cap.withColumn("by_cap", F.lit(True)))
        )
        if self.previous is not None:
            flagged = flagged.unionByName(self._carried(edges))
        self.refused = mat(flagged, "chain_refused")
        all_refused = self.refused.select(*EDGE_COLUMNS)
        all_cap = self.refused.filter("by_cap").select(*EDGE_COLUMNS)
        return without_edges(edges, all_refused), all_refused, all_cap

    def labels_after_refusal(
        self, nodes: DataFrame, edges: DataFrame, mat: Materialise, conf: IdentityConf
    ) -> tuple[DataFrame, CCStats] | None:
        """The components of ``edges`` (the graph after refusal, EDGE_COLUMNS) for every
        node of ``nodes`` (``id``), as jobs.identity.components.connected_components
        gives them, from the labels of a full check (None after a partial one, or none).

        Refusing an edge can only split the component that held it: every other
        component keeps its nodes, hence its smallest node, its label. Only the nodes of
        the components that lost an edge are clustered again, with their kept edges (a
        full 1M run: a few thousand edges instead of 4.4M fetched and clustered)."""
        if self.labels is None or self.refused is None or self.scope is not None:
            return None
        t0 = time.perf_counter()
        refused_src = self.refused.select(
            node_id(F.col("src_source"), F.col("src_key")).alias("id")
        )
        split = self.labels.join(F.broadcast(refused_src.distinct()), "id", "left_semi")
        split = mat(split.select("component").distinct(), "cc_split")
        inside = mat(self.labels.join(F.broadcast(split), "component", "left_semi"), "cc_inside")
        ends = edges.select(
            node_id(F.col("src_source"), F.col("src_key")).alias("src"),
            node_id(F.col("dst_source"), F.col("dst_key")).alias("dst"),
        )
        inside_ids = F.broadcast(inside.select(F.col("id").alias("src")))
        inside_edges = ends.join(inside_ids, "src", "left_semi")
        cc = conf.components
        relabelled, stats = connected_components(
            inside, inside_edges, mat, cc.max_rounds, cc.local_max_edges
        )
        kept = self.labels.join(F.broadcast(split), "component", "left_anti")
        stars = kept.unionByName(relabelled.select("id", "component")).select(
            F.col("id").alias("src"), F.col("component").alias("dst")
        )
        stats.seconds = time.perf_counter() - t0
        return label_nodes(nodes, stars), stats

    def _carried(self, edges: DataFrame) -> DataFrame:
        """Last run's refusals outside the checked components, as today's edge rows."""
        assert self.previous is not None and self.scope is not None
        prev = self.previous.refused
        outside = prev.withColumn("src_id", node_id(F.col("src_source"), F.col("src_key"))).join(
            self.scope.select(F.col("id").alias("src_id")), "src_id", "left_anti"
        )
        return edges.select(*EDGE_COLUMNS).join(outside.select(*EDGE_KEYS, "by_cap"), EDGE_KEYS)

    def _rewrites(self, lake: Lake) -> bool:
        """Whether :meth:`save` rewrites both tables whole (a full check, no state)."""
        return self.scope is None or not all(lake.exists(t) for t in CHAIN_TABLES)

    def to_count(self, lake: Lake) -> dict[str, DataFrame]:
        """The row changes :meth:`save` needs counted (before anything is written), for
        the caller to count with its own figures in one query: ``chain_components``
        (rows of meta/identity_components to change) and ``chain_refused_new`` /
        ``chain_refused_gone`` (refusals added / dropped). Empty for a full rewrite."""
        assert self.labels is not None and self.refused is not None
        if self._rewrites(lake):
            return {}
        refused = self.refused.select(*EDGE_COLUMNS, "by_cap")
        prev = lake.read(REFUSED).select(*EDGE_COLUMNS, "by_cap")
        return {
            "chain_components": component_changes(self.labels, lake.read(COMPONENTS), self.scope),
            "chain_refused_new": refused.subtract(prev),
            "chain_refused_gone": prev.subtract(refused),
        }

    def save(self, lake: Lake, counts: dict[str, int] | None = None) -> dict[str, int]:
        """Write the components and refusals found; only changed rows (no commit when
        nothing changed). ``counts``: :meth:`to_count`'s frames counted by the caller
        (counted here when None). Returns the rows changed per table."""
        assert self.labels is not None and self.refused is not None
        refused = self.refused.select(*EDGE_COLUMNS, "by_cap")
        if self._rewrites(lake):
            lake.overwrite(self.labels, COMPONENTS)
            lake.overwrite(refused, REFUSED)
            return {COMPONENTS: -1, REFUSED: -1}
        changes = component_changes(self.labels, lake.read(COMPONENTS), self.scope)
        n = counts if counts is not None else row_counts(self.to_count(lake))
        n_components = n["chain_components"]
        n_refused = n["chain_refused_new"] + n["chain_refused_gone"]
        if n_components:
            lake.apply_changes(changes, COMPONENTS, rows=n_components)
        if n_refused:
            lake.overwrite(refused, REFUSED)
        return {COMPONENTS: n_components, REFUSED: n_refused}


def component_changes(labels: DataFrame, current: DataFrame, scope: DataFrame) -> DataFrame:
    """Rows of meta/identity_components to upsert (new or relabelled node) or delete (a
    checked node left without edges). Inputs: the labels of the checked nodes (id,
    component; all within ``scope``), the table now, the checked node ids (``id``).
    Output grain: one node id; id, component, ``_op``."""
    checked = current.join(scope, "id", "left_semi").select("id", "component")
    upserts = labels.select("id", "component").subtract(checked)
    gone = checked.join(labels, "id", "left_anti").select(
        "id", F.lit(None).cast("long").alias("component")
    )
    return upserts.withColumn("_op", F.lit("upsert")).unionByName(
        gone.withColumn("_op", F.lit("delete"))
    )
