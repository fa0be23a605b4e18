"""Connected components of the identity graph, distributed: alternating large-star and
small-star (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014).

Nodes are longs. Each round is a few joins and group-bys over the edge list; the
number of rounds grows with log(diameter) (O(log^2 n) worst case), never with the
number of nodes. Nothing is collected but one count per round. Every round's edges
are materialised by the caller's ``materialise`` function (a Parquet write and read
back under ``<work>``) so query plans stay one round deep.

A graph of at most ``local_max_edges`` edges (components.local_max_edges in
conf/identity.yaml: at 1M members the whole graph) is instead fetched in one query as
Arrow and solved on the driver with scipy (:func:`array_labels`): the same labels in one
Spark action instead of two per round, and seconds instead of minutes (at 1M members the
rounds took 20-30 s each). The distributed rounds remain for a graph above that limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.sparse import coo_array, csgraph

from jobs.lake import Materialise

log = logging.getLogger(__name__)


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


def array_labels(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, components): every node of the edges ``src[i]``-``dst[i]`` (int64 ids)
    with the smallest node of its component: scipy's connected components over the
    nodes numbered 0..n-1 (at 1M members, 4.5M edges take seconds where the distributed
    rounds took minutes)."""
    if len(src) == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    nodes, index = np.unique(np.concatenate([src, dst]), return_inverse=True)
    m, n = len(src), len(nodes)
    graph = coo_array((np.ones(m, dtype=np.float32), (index[:m], index[m:])), shape=(n, n))
    _, component = csgraph.connected_components(graph, directed=False)
    # ``nodes`` is sorted, so each component's first node is its smallest.
    _, first = np.unique(component, return_index=True)
    return nodes, nodes[first][component]


def _local_labels(
    edges: DataFrame, local_max_edges: int, materialise: Materialise
) -> DataFrame | None:
    """Labels (src: node, dst: component) of a graph of at most ``local_max_edges``
    edges, solved on the driver (:func:`array_labels` over the edges fetched as Arrow);
    None for a larger graph (one bounded query). The labels go back through
    ``materialise.arrow`` (jobs.lake.ParquetScratch) when it has one: a Parquet file,
    where ``createDataFrame`` would send them in one message (capped at 128 MiB)."""
    if local_max_edges <= 0:
        return None
    # Canonical (distinct) edges: fewer rows to fetch, and without the DISTINCT Sail
    # 0.7.2 panics fetching hashed ends of a Delta scan ("Trying to access an element at
    # index 1 from a StringArray of length 1", as in jobs.identity.chains._edge_ids).
    table = _canonical(edges).limit(local_max_edges + 1).toArrow()
    if table.num_rows > local_max_edges:
        return None
    src, dst = (table.column(c).to_numpy() for c in ("src", "dst"))
    nodes, components = array_labels(src, dst)
    labels = pa.table({"src": nodes, "dst": components})
    spark = edges.sparkSession
    load = getattr(materialise, "arrow", None)
    return spark.createDataFrame(labels) if load is None else load(spark, labels, "cc_local")


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
    local = _local_labels(edges, local_max_edges, materialise)
    if local is not None:
        stats.rounds = 1
        return label_nodes(nodes, local), _timed(stats, t0)
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
    return label_nodes(nodes, cur), _timed(stats, t0)


def label_nodes(nodes: DataFrame, stars: DataFrame) -> DataFrame:
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
