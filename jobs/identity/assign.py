"""Stable member ids across nightly runs (pure transforms).

Given this run's clusters and the previous run's ``silver/member_xref``:

* a cluster holding identities of exactly one previous member keeps its id;
* a cluster holding several previous members (a merge) keeps the oldest id
  (earliest ``member_id_assigned``, then the smallest id); the others are retired;
* a previous member whose identities now fall into several clusters (a split)
  stays with the cluster holding its oldest identity (earliest first_seen, then
  the smallest node); the other parts get another id;
* a cluster with no previous member gets a new id derived from a hash of its oldest
  identity, so re-running a date on the same data gives the same ids.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.columns import sorted_distinct
from jobs.lake import Materialise


class CircuitBreakerTripped(RuntimeError):
    """This run would change too many existing members; nothing was written."""


def new_member_id(seed: F.Column) -> F.Column:
    """``M`` + 16 hex digits of SHA-256: 64 bits, no collision in any realistic member count."""
    return F.concat(F.lit("M"), F.upper(F.substring(F.sha2(seed, 256), 1, 16)))


_NO_DATE = "0001-01-01"  # a null date sorts first, as in a struct min


def oldest(df: DataFrame, keys: list[str], date_col: str, node_col: str) -> DataFrame:
    """Per ``keys``: the smallest (date, node) pair, as columns ``s`` and ``n``.

    Equal to ``min(struct(date, node))`` grouped by ``keys`` (a null date is the
    smallest), in two plain aggregates: a struct min keeps one boxed accumulator per
    group in the embedded engine, 11x slower and unspillable at a million clusters.
    Output grain: one row per ``keys``.
    """
    d = df.select(
        *keys,
        F.coalesce(F.col(date_col), F.lit(_NO_DATE).cast("date")).alias("s"),
        F.col(node_col).alias("n"),
    )
    first = d.groupBy(*keys).agg(F.min("s").alias("s"))
    return (
        d.join(first, [*keys, "s"])
        .groupBy(*keys, "s")
        .agg(F.min("n").alias("n"))
        .withColumn("s", F.when(F.col("s") != F.lit(_NO_DATE).cast("date"), F.col("s")))
    )


def assign_member_ids(
    clustered: DataFrame,
    previous: DataFrame,
    used_ids: DataFrame,
    as_of: dt.date,
    materialise: Materialise | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Give every eligible cluster a member id and list the id changes.

    Inputs:
      ``clustered``: one source identity; source, source_key, node, cluster_id, eligible
        (the cluster may be a member), first_seen, last_seen.
      ``previous``: the previous silver/member_xref (one source identity): source,
        source_key, member_id, member_id_assigned, first_seen.
      ``used_ids``: one member id ever handed out (current and retired); a new id that
        would reuse one is salted with the date instead.
      ``materialise``: when given (a full run), the identities joined to their previous
        members, the (cluster, previous member) pairs and the clusters' ids are each
        written once. Inlined, the plan joins every identity to the previous xref once per
        reader, all in one query: at 5M members (23.6M identities on both sides) that
        query took the process from 9 to 17 GB and failed in the 8 GiB hash-join pool.
    Outputs:
      assignments: one source identity with ``member_id`` (null for ineligible clusters)
        and ``member_id_assigned``;
      changes: one (old_member_id, new_member_id, change_type) with change_type merge,
        split or dissolved (new id null: no eligible cluster holds its identities).
    """
    d = F.lit(as_of)
    prev = previous.filter(F.col("member_id").isNotNull()).select(
        "source",
        "source_key",
        F.col("member_id").alias("prev_id"),
        F.col("member_id_assigned").alias("prev_assigned"),
        F.col("first_seen").alias("prev_first_seen"),
    )
    mat = materialise or (lambda df, _name: df)
    cur = mat(clustered.join(prev, ["source", "source_key"], "left"), "assign_current")
    seen = F.coalesce("prev_first_seen", "first_seen")

    # One row per (cluster, previous member) it holds.
    held = cur.filter(F.col("prev_id").isNotNull())
    pairs = (
        held.groupBy("cluster_id", "prev_id")
        .agg(
            F.min("prev_assigned").alias("assigned"),
            F.max(F.col("eligible").cast("int")).alias("eligible"),
            F.count(F.lit(1)).alias("n_identities"),
        )
        .join(
            oldest(held.withColumn("s", seen), ["cluster_id", "prev_id"], "s", "node"),
            ["cluster_id", "prev_id"],
        )
    )
    pairs = mat(pairs, "assign_pairs")
    # The part of a previous member holding its oldest identity is its primary part.
    w_prev = Window.partitionBy("prev_id").orderBy(
        F.col("eligible").desc(), F.col("s").asc_nulls_first(), F.col("n")
    )
    pairs = pairs.withColumn(
        "primary", (F.row_number().over(w_prev) == 1) & (F.col("eligible") == 1)
    )
    # A cluster keeps the oldest of the previous ids it is primary for.
    w_cl = Window.partitionBy("cluster_id").orderBy(
        F.col("assigned").asc_nulls_last(), F.col("prev_id")
    )
    survivors = (
        pairs.filter(F.col("primary"))
        .withColumn("rk", F.row_number().over(w_cl))
        .filter(F.col("rk") == 1)
        .select("cluster_id", F.col("prev_id").alias("kept_id"), F.col("assigned").alias("kept_at"))
    )
    clusters = oldest(cur.filter(F.col("eligible")), ["cluster_id"], "first_seen", "node").join(
        survivors, "cluster_id", "left"
    )
    used = used_ids.select(F.col("member_id").alias("plain")).distinct()
    clusters = (
        clusters.withColumn("plain", new_member_id(F.col("n")))
        .join(used.withColumn("taken", F.lit(True)), "plain", "left")
        .withColumn(
            "member_id",
            F.coalesce(
                F.col("kept_id"),
                F.when(F.col("taken").isNull(), F.col("plain")).otherwise(
                    new_member_id(F.concat(F.col("n"), F.lit("@"), d.cast("string")))
                ),
            ),
        )
        .withColumn("member_id_assigned", F.coalesce(F.col("kept_at"), d))
        .select("cluster_id", "member_id", "member_id_assigned")
    )
    clusters = mat(clusters, "assign_clusters")
    assignments = cur.drop("prev_id", "prev_assigned", "prev_first_seen").join(
        clusters, "cluster_id", "left"
    )

    # Changes: a previous id that did not survive in an eligible cluster holding its
    # identities. Its primary part losing to an older id is a merge; another part is a
    # split; a previous member with no eligible part left (e.g. its only phone is now
    # blocked) is dissolved. Parts falling into ineligible clusters of a member that
    # lives on are identities leaving, not id changes.
    ch = pairs.join(clusters, "cluster_id", "left")
    moved = ch.filter(F.col("member_id").isNotNull() & (F.col("member_id") != F.col("prev_id")))
    moved = moved.select(
        F.col("prev_id").alias("old_member_id"),
        F.col("member_id").alias("new_member_id"),
        F.when(F.col("primary"), "merge").otherwise("split").alias("change_type"),
        "cluster_id",
        "n_identities",
    )
    has_primary = pairs.filter(F.col("primary")).select("prev_id").distinct()
    dissolved = (
        pairs.join(has_primary, "prev_id", "left_anti")
        .groupBy("prev_id")
        .agg(F.min("cluster_id").alias("cluster_id"), F.sum("n_identities").alias("n_identities"))
        .select(
            F.col("prev_id").alias("old_member_id"),
            F.lit(None).cast("string").alias("new_member_id"),
            F.lit("dissolved").alias("change_type"),
            "cluster_id",
            "n_identities",
        )
    )
    return assignments, moved.unionByName(dissolved)


def check_circuit_breaker(
    changes: DataFrame,
    n_existing: int,
    max_share: float,
    min_changes: int,
    top: int,
    n_changes: int | None = None,
) -> dict:
    """Raise :class:`CircuitBreakerTripped` when too many existing members would change.

    ``changes``: one id change (see :func:`assign_member_ids`); ``n_changes``: its row
    count when the caller already has it. Only the count and the ``top`` biggest
    clusters are brought to the driver.
    """
    if n_changes is None:
        n_changes = changes.count()
    limit = max(max_share * n_existing, min_changes)
    figures = {"existing_members": n_existing, "changes": n_changes, "change_limit": limit}
    if n_existing == 0 or n_changes <= limit:
        return figures
    worst = (
        changes.groupBy("cluster_id")
        .agg(
            F.count(F.lit(1)).alias("n_changes"),
            F.sum("n_identities").alias("n_identities"),
            F.concat_ws(",", sorted_distinct("change_type")).alias("types"),
            F.concat_ws(",", F.slice(sorted_distinct("old_member_id"), 1, 5)).alias(
                "old_ids"
            ),
        )
        .orderBy(F.col("n_changes").desc(), F.col("n_identities").desc(), "cluster_id")
        .limit(top)
        .collect()
    )
    listing = "; ".join(
        f"cluster {r['cluster_id']}: {r['n_changes']} {r['types']} of {r['n_identities']} "
        f"identities (old ids {r['old_ids']})"
        for r in worst
    )
    raise CircuitBreakerTripped(
        f"identity circuit breaker: {n_changes} member id changes would touch more than "
        f"{max_share:.2%} of {n_existing} existing members (limit {limit:.0f}); nothing was "
        f"written. Biggest: {listing}. Check the night's CRM/POS data; to accept, rerun with "
        "CDP_IDENTITY_ACCEPT_CHANGES=1."
    )
