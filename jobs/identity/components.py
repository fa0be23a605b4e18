"""Connected components of the identity graph, distributed: alternating large-star and
small-star (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014).

Nodes are longs. Each round is a few joins and group-bys over the edge list; the
number of rounds grows with log(diameter) (O(log^2 n) worst case), never with the
number of nodes. Nothing is collected but one count per round. Every round's edges
are materialised by the caller's ``materialise`` function (a Parquet write and read
back under ``<work>``) so query plans stay one round deep.

A graph of at most ``local_max_edges`` edges (components.local_max_edges in
conf/identity.yaml; an incremental night's touched subgraph, a small lake) is instead
collected in one query and solved on the driver with a union-find: the same labels in
one Spark action instead of two per round (each costs 0.2-1 s on a JVM engine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

Materialise = Callable[[DataFrame, str], DataFrame]


class ComponentsDidNotConverge(RuntimeError):
    pass


@dataclass
class CCStats:
    # Passes over the edges: the distributed rounds, or 1 for the driver's union-find.
    rounds: int = 0
    seconds: float = 0.0
    edges_per_round: list[int] = field(default_factory=list)


def _canonical(edges: DataFrame) -> DataFrame:
    """(src, dst) with src > dst, no self loops, no duplicates."""
    return (
        edges.select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
        .filter(F.col("src") != F.col("dst"))
        .distinct()
    )


def large_star(edges: DataFrame) -> DataFrame:
    """Connect every strictly larger neighbour of u to m(u) = min(u, neighbours of u).

    Input/output grain: one undirected edge (src, dst) with src > dst.
    """
    both = edges.select(F.col("src").alias("u"), F.col("dst").alias("v")).unionByName(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("v"))
    )
    m = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    out = (
        both.join(m, "u")
        .filter(F.col("v") > F.col("u"))
        .select(F.col("v").alias("src"), F.col("m").alias("dst"))
    )
    return out.distinct()


def small_star(edges: DataFrame) -> DataFrame:
    """Connect u and all its smaller neighbours to the smallest of them.

    Input/output grain: one undirected edge (src, dst) with src > dst.
    """
    m = edges.groupBy("src").agg(F.min("dst").alias("m"))
    moved = (
        edges.join(m, "src")
        .filter(F.col("dst") != F.col("m"))
        .select(F.col("dst").alias("src"), F.col("m").alias("dst"))
    )
    return moved.unionByName(m.select("src", F.col("m").alias("dst"))).distinct()


def unconverged(edges: DataFrame) -> int:
    """How many edges keep the graph from being a set of stars.

    Converged means every non-root node has exactly one parent and that parent is a
    root (never itself a child): then each star is one component and its root is the
    component's smallest node.
    """
    per_src = edges.groupBy("src").agg(F.count(F.lit(1)).alias("n_parents"))
    children = per_src.select(F.col("src").alias("dst"))
    bad = (
        edges.join(per_src, "src")
        .join(children.withColumn("dst_is_child", F.lit(True)), "dst", "left")
        .filter((F.col("n_parents") > 1) | F.col("dst_is_child").isNotNull())
    )
    return bad.count()


def union_find_labels(edges: list[tuple[int, int]]) -> dict[int, int]:
    """Every node of ``edges`` -> the smallest node of its component (on the driver)."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:  # the smaller root wins: a root is always its component's minimum
            parent[max(ra, rb)] = min(ra, rb)
    return {x: root(x) for x in parent}


def _local_labels(edges: DataFrame, local_max_edges: int) -> DataFrame | None:
    """Labels (src: node, dst: component) of a graph of at most ``local_max_edges``
    distinct edges, solved on the driver; None for a larger graph (one bounded query)."""
    if local_max_edges <= 0:
        return None
    rows = _canonical(edges).limit(local_max_edges + 1).collect()
    if len(rows) > local_max_edges:
        return None
    labels = union_find_labels([(r["src"], r["dst"]) for r in rows])
    return edges.sparkSession.createDataFrame(sorted(labels.items()), "src long, dst long")


def connected_components(
    nodes: DataFrame,
    edges: DataFrame,
    materialise: Materialise,
    max_rounds: int = 60,
    local_max_edges: int = 0,
) -> tuple[DataFrame, CCStats]:
    """Label every node with the smallest node id of its component.

    Inputs: ``nodes`` one row per node (column ``id``, long); ``edges`` one row per
    edge (``src``, ``dst`` longs; direction and duplicates do not matter);
    ``local_max_edges``: a graph of at most this many distinct edges is solved on the
    driver (0: never). Output grain: one node; columns ``id``, ``component`` (long, min
    id of its component).
    """
    stats = CCStats()
    t0 = time.perf_counter()
    local = _local_labels(edges, local_max_edges)
    if local is not None:
        stats.rounds = 1
        return _label_nodes(nodes, local), _timed(stats, t0)
    cur = materialise(_canonical(edges), "cc_r0")
    for r in range(1, max_rounds + 1):
        cur = materialise(small_star(large_star(cur)), f"cc_r{r}")
        stats.rounds = r
        left = unconverged(cur)
        stats.edges_per_round.append(left)
        log.info("connected components round %d: %d edges not yet on a root", r, left)
        if left == 0:
            break
    else:
        raise ComponentsDidNotConverge(f"no convergence after {max_rounds} rounds")
    return _label_nodes(nodes, cur), _timed(stats, t0)


def _label_nodes(nodes: DataFrame, stars: DataFrame) -> DataFrame:
    """Every node with its component; ``stars``: one non-root node (src) -> its root
    (dst); a node in no star is its own component. Output grain: one node (id, component)."""
    labels = stars.select(F.col("src").alias("id"), F.col("dst").alias("component"))
    return (
        nodes.select("id")
        .distinct()
        .join(labels, "id", "left")
        .select("id", F.coalesce("component", "id").alias("component"))
    )


def _timed(stats: CCStats, t0: float) -> CCStats:
    stats.seconds = time.perf_counter() - t0
    return stats


# Edge confidence -> order in which :func:`refuse_never_link_merges` accepts edges.
CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class LinkProfile:
    """What the never-link rules look at on one CRM record (id_card: valid key or None)."""

    id_card: str | None
    gender: str | None
    birth_date: object | None


def never_linked(a: LinkProfile, b: LinkProfile, different_ids: bool, gender_dob: bool) -> bool:
    """True when a never-link rule keeps the two records apart (same rules as
    :func:`jobs.identity.corroborate.never_link`)."""
    ids = different_ids and None not in (a.id_card, b.id_card) and a.id_card != b.id_card
    g_d = (
        gender_dob
        and None not in (a.gender, b.gender, a.birth_date, b.birth_date)
        and a.gender != b.gender
        and a.birth_date != b.birth_date
    )
    return bool(ids or g_d)


@dataclass(frozen=True)
class Refusals:
    """Indexes (into the clustered edge list) of the refused edges, by reason."""

    never_link: list[int]
    cap: list[int]


def refuse_merges(
    edges: list[tuple[str, str, str]],
    profiles: dict[str, LinkProfile],
    different_ids: bool = True,
    gender_dob: bool = True,
    max_records: int | None = None,
    capped: Collection[int] = (),
) -> Refusals:
    """Cluster ``edges`` (src node, dst node, confidence) strongest first, refusing every
    edge whose merge would put two records the never-link rules keep apart into one
    cluster (``profiles``: node -> its CRM record's profile). Chains count: A-B then B-C
    refuses B-C when A and C never link. Within a confidence, edges go in list order.

    An edge listed in ``capped`` (a fuzzy, second-pass edge) is also refused when its
    merge would give the cluster more than ``max_records`` CRM records (nodes in
    ``profiles``); other edges are never refused by the cap.
    Runs on the driver over the few components to split.
    """
    parent: dict[str, str] = {}
    members: dict[str, list[LinkProfile]] = {}
    capped = frozenset(capped)

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order = sorted(range(len(edges)), key=lambda i: (CONFIDENCE_RANK.get(edges[i][2], 3), i))
    out = Refusals(never_link=[], cap=[])
    for i in order:
        a, b = find(edges[i][0]), find(edges[i][1])
        if a == b:
            continue
        ma = members.get(a, [profiles[edges[i][0]]] if edges[i][0] in profiles else [])
        mb = members.get(b, [profiles[edges[i][1]]] if edges[i][1] in profiles else [])
        if any(never_linked(p, q, different_ids, gender_dob) for p in ma for q in mb):
            out.never_link.append(i)
            continue
        if max_records is not None and i in capped and len(ma) + len(mb) > max_records:
            out.cap.append(i)
            continue
        parent[b] = a
        members[a] = ma + mb
        members.pop(b, None)
    return Refusals(never_link=sorted(out.never_link), cap=sorted(out.cap))


def refuse_never_link_merges(
    edges: list[tuple[str, str, str]],
    profiles: dict[str, LinkProfile],
    different_ids: bool = True,
    gender_dob: bool = True,
) -> list[int]:
    """The edges :func:`refuse_merges` refuses by the never-link rules alone (no cap)."""
    return refuse_merges(edges, profiles, different_ids, gender_dob).never_link
