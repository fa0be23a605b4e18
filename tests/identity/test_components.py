"""Connected components against hand-drawn graphs."""

from __future__ import annotations

from jobs.identity.components import connected_components
from jobs.lake import parquet_materialiser


def _labels(spark, tmp_path, nodes, edges) -> tuple[dict[int, int], int]:
    n = spark.createDataFrame([(i,) for i in nodes], "id long")
    e = spark.createDataFrame(edges, "src long, dst long")
    out, stats = connected_components(n, e, parquet_materialiser(tmp_path))
    return {r["id"]: r["component"] for r in out.collect()}, stats.rounds


def test_components_of_a_small_forest(spark, tmp_path):
    # {1,2,3,7} via 7-3, 3-2, 2-1 ... and a duplicate reversed edge; {4,5}; {6} alone;
    # {10,11,12} a triangle.
    edges = [(7, 3), (3, 2), (1, 2), (2, 3), (5, 4), (10, 11), (11, 12), (12, 10)]
    labels, rounds = _labels(spark, tmp_path, range(1, 13), edges)
    assert labels == {
        1: 1, 2: 1, 3: 1, 7: 1,
        4: 4, 5: 4,
        6: 6, 8: 8, 9: 9,
        10: 10, 11: 10, 12: 10,
    }  # fmt: skip
    assert rounds >= 1


def test_long_path_converges_in_few_rounds(spark, tmp_path):
    # A path of 64 nodes numbered so that min-label propagation would need ~64 steps.
    order = list(range(64, 0, -1))  # 64 - 63 - ... - 1, smallest at the far end
    edges = [(order[i], order[i + 1]) for i in range(len(order) - 1)]
    labels, rounds = _labels(spark, tmp_path, order, edges)
    assert set(labels.values()) == {1}
    assert rounds <= 12  # log-ish, far below the diameter 63


def test_two_parents_are_not_mistaken_for_convergence(spark, tmp_path):
    # Star centres 1 and 2 joined only through leaf 9: one component.
    edges = [(9, 1), (9, 2), (5, 1), (6, 2)]
    labels, _ = _labels(spark, tmp_path, [1, 2, 5, 6, 9], edges)
    assert set(labels.values()) == {1}
