"""The incremental never-link chain check picks the right components (jobs.identity.chains):
pure transforms on a few rows, no lake."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from jobs.identity.chains import ChainPrevious, component_changes, touched_nodes
from jobs.identity.graph import EDGE_COLUMNS

D = dt.date(2026, 1, 1)
SCHEMA = "src_source string, src_key string, dst_source string, dst_key string, rule string, " \
    "confidence string, first_seen date, last_seen date"  # fmt: skip


def edges(spark, pairs: list[tuple[str, str, str, str]]):
    rows = [(a, b, c, d, f"crm_{d[:3]}", "high", D, D) for a, b, c, d in pairs]
    return spark.createDataFrame(rows, SCHEMA)


def ids(spark, nodes: list[str]) -> dict[int, str]:
    df = spark.createDataFrame([(n,) for n in nodes], "node string")
    return {r["id"]: r["node"] for r in df.select("node", F.xxhash64("node").alias("id")).collect()}


def test_only_components_touched_by_a_changed_edge_or_crm_record_are_checked(spark, tmp_path):
    from jobs.lake import parquet_materialiser

    mat = parquet_materialiser(tmp_path)
    before = [("crm", "A", "pos_phone", "p1"), ("crm", "B", "pos_phone", "p1"),
              ("crm", "C", "email", "e1"), ("crm", "E", "pos_phone", "p9")]  # fmt: skip
    names = ids(spark, ["crm:A", "crm:B", "pos_phone:p1", "crm:C", "email:e1", "crm:E",
                        "pos_phone:p9", "crm:D", "email:e2"])  # fmt: skip
    by_name = {v: k for k, v in names.items()}
    comp = {"crm:A": "ab", "crm:B": "ab", "pos_phone:p1": "ab", "crm:C": "c", "email:e1": "c",
            "crm:E": "e", "pos_phone:p9": "e"}  # fmt: skip
    smallest = {c: min(by_name[n] for n in comp if comp[n] == c) for c in set(comp.values())}
    components = spark.createDataFrame(
        [(by_name[n], smallest[c]) for n, c in comp.items()], "id long, component long"
    )
    prev = ChainPrevious(
        components=components,
        edges=edges(spark, before),
        refused=spark.createDataFrame([], f"{SCHEMA}, by_cap boolean"),
        crm_seeds=spark.createDataFrame([("E",)], "crm_key string"),  # E has a new version
    )
    # Tonight: C's e-mail edge goes, D arrives with a new e-mail; A-B untouched.
    now = edges(spark, [before[0], before[1], before[3], ("crm", "D", "email", "e2")])
    got = {names[r["id"]] for r in touched_nodes(now.select(*EDGE_COLUMNS), prev, mat).collect()}
    assert got == {"crm:C", "email:e1", "crm:D", "email:e2", "crm:E", "pos_phone:p9"}

    # C and e1 lost their only edge: their rows go; D and e2 are new.
    labels = spark.createDataFrame(
        [(by_name["crm:E"], smallest["e"]), (by_name["pos_phone:p9"], smallest["e"]),
         (by_name["crm:D"], min(by_name["crm:D"], by_name["email:e2"])),
         (by_name["email:e2"], min(by_name["crm:D"], by_name["email:e2"]))],
        "id long, component long",
    )  # fmt: skip
    scope = spark.createDataFrame([(by_name[n],) for n in got], "id long")
    ch = {
        (names[r["id"]], r["_op"]) for r in component_changes(labels, components, scope).collect()
    }
    assert ch == {("crm:C", "delete"), ("email:e1", "delete"), ("crm:D", "upsert"),
                  ("email:e2", "upsert")}  # fmt: skip


def test_a_full_check_labels_the_graph_after_refusal_as_clustering_it_again(spark, tmp_path):
    """The full check's labels, reused after refusal, equal the components of the kept
    edges clustered from scratch: a split component gets one label per part (its
    smallest node), the untouched ones keep theirs, a node with no edge is its own."""
    from jobs.identity.chains import ChainCheck
    from jobs.identity.components import connected_components
    from jobs.identity.conf import load_identity_conf
    from jobs.lake import parquet_materialiser
    from tests.identity.test_never_link import chain_edges

    conf = load_identity_conf()
    all_edges, profiles = chain_edges(spark, groups=3)  # three components split, one not
    mat = parquet_materialiser(tmp_path)
    check = ChainCheck(None)
    kept, refused, _ = check(all_edges.select(*EDGE_COLUMNS), profiles, conf, mat)
    assert refused.count() == 3
    ends = [F.concat(F.col(f"{s}_source"), F.lit(":"), F.col(f"{s}_key")) for s in ("src", "dst")]
    nodes = (
        all_edges.select(ends[0].alias("node"))
        .unionByName(all_edges.select(ends[1].alias("node")))
        .unionByName(spark.createDataFrame([("crm:alone",)], "node string"))
        .distinct()
        .withColumn("id", F.xxhash64("node"))
    )
    reused = check.labels_after_refusal(nodes, kept, mat, conf)
    assert reused is not None
    hashed = kept.select(F.xxhash64(ends[0]).alias("src"), F.xxhash64(ends[1]).alias("dst"))
    fresh, _ = connected_components(nodes, hashed, mat, local_max_edges=1000)
    got = {(r["id"], r["component"]) for r in reused[0].collect()}
    assert got == {(r["id"], r["component"]) for r in fresh.collect()}
    assert len({c for _, c in got}) == 3 * 2 + 1 + 1  # each split in two, G-H, alone


def test_labels_after_refusal_are_not_reused_from_a_partial_check(spark):
    from jobs.identity.chains import ChainCheck

    check = ChainCheck(None)
    assert check.labels_after_refusal(None, None, None, None) is None  # nothing checked yet
    check.labels, check.refused, check.scope = object(), object(), object()
    assert check.labels_after_refusal(None, None, None, None) is None
