"""Pipeline step `identity`: bronze -> identity graph -> components -> stable member ids
-> silver/member_xref, silver/members, restricted/member_pii, silver/identity_edges,
silver/blocked_identifiers, silver/member_id_history, silver/member_id_changes.

Everything is computed and checked (circuit breaker) before the first table is
written. Intermediate results are materialised as Parquet under
``<work>/identity/<run_id>`` so each query plan stays small; the folder is removed
after a successful run.

Incrementality: the previous assignments are read back from silver/member_xref and
compared cluster by cluster, so a later version can restrict the component search
to clusters touched by new edges without changing the id rules.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.identity import normalize as N
from jobs.identity.assign import assign_member_ids, check_circuit_breaker
from jobs.identity.components import connected_components
from jobs.identity.conf import IdentityConf, load_identity_conf
from jobs.identity.golden import golden_records
from jobs.identity.graph import MEMBER_SOURCES, build_graph
from jobs.privacy.pii import hmac_col

log = logging.getLogger(__name__)

ACCEPT_ENV = "CDP_IDENTITY_ACCEPT_CHANGES"


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


def _materialiser(base: Path):
    def materialise(df: DataFrame, name: str) -> DataFrame:
        path = str(base / name)
        df.write.mode("overwrite").parquet(path)
        # The schema travels with the read: an empty result may leave no file to infer it.
        return df.sparkSession.read.schema(df.schema).parquet(path)

    return materialise


def resolve(ctx: RunContext, conf: IdentityConf | None = None) -> dict:
    """Compute everything; write the silver tables only when the breaker lets it."""
    conf = conf or load_identity_conf()
    d = ctx.as_of
    lake = ctx.lake
    key = ctx.pii_key
    t0 = time.perf_counter()
    crm = lake.read("bronze/crm_members").filter(F.col("_business_date") <= F.lit(d))
    pos = lake.read("bronze/pos_lines").filter(F.col("_business_date") <= F.lit(d))
    web = lake.read("bronze/web_events").filter(F.col("_business_date") <= F.lit(d))

    base = Path(ctx.settings.paths.work) / "identity" / ctx.run_id
    mat = _materialiser(base)
    g = build_graph(ctx.spark, crm, pos, web, conf, key, mat)
    identities = mat(g.identities, "identities")
    edges = mat(g.edges, "edges")
    blocked = mat(g.blocked, "blocked")
    t_graph = time.perf_counter() - t0

    nodes = mat(node_ids(identities, edges), "nodes")
    collisions = nodes.groupBy("id").agg(F.count(F.lit(1)).alias("n")).filter("n > 1").count()
    if collisions:
        raise NodeIdCollision(f"{collisions} xxhash64 collisions among identity nodes")
    e = edges.select(
        F.xxhash64(_node(F.col("src_source"), F.col("src_key"))).alias("src"),
        F.xxhash64(_node(F.col("dst_source"), F.col("dst_key"))).alias("dst"),
    )
    labels, cc = connected_components(nodes, e, mat, conf.components.max_rounds)
    clustered = mat(cluster_identities(identities, mat(labels, "labels")), "clustered")

    previous = lake.read("silver/member_xref")
    history = lake.read("silver/member_id_history")
    used = previous.select("member_id").unionByName(history.select("member_id"))
    assigned, changes = assign_member_ids(clustered, previous, used, d)
    assigned = mat(assigned, "assigned")
    changes = mat(changes, "changes")
    n_existing = previous.filter(F.col("member_id").isNotNull()).select("member_id").distinct()
    n_existing = n_existing.count()
    br = conf.circuit_breaker
    if br.enabled and not os.environ.get(ACCEPT_ENV):
        breaker = check_circuit_breaker(
            changes, n_existing, br.max_change_share, br.min_changes, br.report_top
        )
    else:
        breaker = {"existing_members": n_existing, "changes": changes.count(), "skipped": True}

    xref = assigned.select(
        "source",
        "source_key",
        "member_id",
        "cluster_id",
        "member_id_assigned",
        "blocked",
        "first_seen",
        "last_seen",
        F.lit(d).alias("as_of_date"),
    )
    phones = (
        pos.groupBy("order_id")
        .agg(
            F.max(N.norm_phone(F.col("phone"))).alias("phone"),
            F.min("order_ts").alias("order_ts"),
        )
        .filter(F.col("phone").isNotNull())
        .withColumn("phone_key", hmac_col(F.col("phone"), key))
    )
    blocked_phones = blocked.filter(F.col("id_type") == "phone").select(
        F.col("value_hash").alias("key")
    )
    members, pii = golden_records(crm, xref, phones, blocked_phones, key, d)

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

    # Writes: the log of changes first (idempotent merges), the xref (next run's
    # baseline) last.
    lake.merge(
        change_rows, "silver/member_id_changes", ["old_member_id", "new_member_id", "as_of_date"]
    )
    lake.merge(history_rows, "silver/member_id_history", ["member_id"], update=False)
    lake.overwrite(members, "silver/members")
    lake.overwrite(pii, "restricted/member_pii")
    lake.overwrite(edges, "silver/identity_edges")
    lake.replace_where(
        blocked.withColumn("as_of_date", F.lit(d)),
        "silver/blocked_identifiers",
        f"as_of_date = '{d.isoformat()}'",
    )
    lake.overwrite(xref, "silver/member_xref")

    counts = {
        r["change_type"]: r["n"]
        for r in changes.groupBy("change_type").agg(F.count(F.lit(1)).alias("n")).collect()
    }
    x = lake.read("silver/member_xref")
    figures = {
        "rows_in": identities.count(),
        "rows_out": x.count(),
        "members": x.filter(F.col("member_id").isNotNull()).select("member_id").distinct().count(),
        "edges": edges.count(),
        "blocked_values": blocked.count(),
        "superseded_edges": g.superseded.count(),
        "merges": counts.get("merge", 0),
        "splits": counts.get("split", 0),
        "dissolved": counts.get("dissolved", 0),
        "existing_members": n_existing,
        "breaker": breaker,
        "cc_rounds": cc.rounds,
        "cc_seconds": round(cc.seconds, 3),
        "cc_unconverged_per_round": cc.edges_per_round,
        "graph_seconds": round(t_graph, 3),
        "seconds_total": round(time.perf_counter() - t0, 3),
    }
    shutil.rmtree(base, ignore_errors=True)
    log.info("identity %s: %s", d, figures)
    return figures


def run(ctx: RunContext) -> dict:
    """Pipeline step: identity resolution as of ``ctx.as_of``."""
    return resolve(ctx)
