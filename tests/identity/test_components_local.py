"""Connected components solved on the driver (components.local_max_edges) give the
labels of the distributed large-star/small-star rounds, in one query."""

from __future__ import annotations

import random

import numpy as np

from jobs.identity.components import array_labels, connected_components
from jobs.lake import parquet_materialiser


def union_find_labels(edges: list[tuple[int, int]]) -> dict[int, int]:
    """Reference: every node of ``edges`` -> the smallest node of its component, by a
    plain union-find (what the driver solved with before scipy)."""
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


def test_union_find_labels_each_node_with_its_smallest_node():
    edges = [(7, 3), (3, 2), (1, 2), (5, 4), (10, 11), (11, 12), (12, 10)]
    assert union_find_labels(edges) == {
        1: 1, 2: 1, 3: 1, 7: 1, 4: 4, 5: 4, 10: 10, 11: 10, 12: 10,
    }  # fmt: skip
    assert union_find_labels([]) == {}


def test_array_labels_match_the_union_find_with_signed_ids():
    """Node ids are xxhash64 values: negative ones included, the smallest is the most
    negative, as Spark orders longs."""
    rng = random.Random(5)
    ids = [rng.randrange(-(2**63), 2**63) for _ in range(400)]
    edges = [(rng.choice(ids), rng.choice(ids)) for _ in range(300)] + [(ids[0], ids[0])]
    src, dst = (np.array(side, dtype=np.int64) for side in zip(*edges, strict=True))
    nodes, components = array_labels(src, dst)
    assert dict(zip(nodes.tolist(), components.tolist(), strict=True)) == union_find_labels(edges)
    assert [len(a) for a in array_labels(src[:0], dst[:0])] == [0, 0]


def test_local_and_distributed_labels_agree(spark, tmp_path):
    rng = random.Random(11)
    ids = list(range(1, 301))
    # Sparse random graph: many components, some long chains, self loops and repeats.
    edges = [(rng.choice(ids), rng.choice(ids)) for _ in range(220)] + [(5, 5), (9, 8), (8, 9)]
    nodes = spark.createDataFrame([(i,) for i in ids], "id long")
    e = spark.createDataFrame(edges, "src long, dst long")

    def labels(local_max_edges: int, folder: str) -> tuple[dict[int, int], int]:
        mat = parquet_materialiser(tmp_path / folder)
        out, stats = connected_components(nodes, e, mat, local_max_edges=local_max_edges)
        return {r["id"]: r["component"] for r in out.collect()}, stats.rounds

    distributed, rounds = labels(0, "dist")
    local, local_rounds = labels(len(edges), "local")
    assert local == distributed and len(local) == len(ids)
    assert local_rounds == 1 and rounds > 1
    # A graph above the limit goes the distributed way: the same labels again.
    above, above_rounds = labels(10, "above")
    assert above == distributed and above_rounds == rounds
