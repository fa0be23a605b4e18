"""Fuzzy second pass: CRM records sharing no identifier, the same birth date and city
(blocking key), whose names differ by a typo or by token order (``carbone`` vs
``carbne``, ``quilliam ashleigh`` vs ``ashleigh quilliam``). Exact name matches are the
``name_dob_city`` rule's (graph.py); the never-link rules veto a pair here too.

Comparisons use Spark built-ins only (``levenshtein``), so the pass runs on Sail and
JVM Spark alike. Pure transforms: DataFrames in, DataFrames out.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.identity.conf import IdentityConf
from jobs.identity.corroborate import names_close, never_link


def _blocked_profiles(latest: DataFrame, profiles: DataFrame, max_block: int) -> DataFrame:
    """Records keyed by (birth date, city), in blocks of at most ``max_block`` records.

    Output grain: one crm_id; the profile columns plus block and seen.
    """
    keyed = (
        latest.select(
            F.col("crm_key").alias("crm_id"),
            F.col("_business_date").alias("seen"),
            N.norm_city(F.col("city")).alias("city_key"),
        )
        .join(profiles, "crm_id")
        .filter(
            F.col("birth_date").isNotNull()
            & F.col("city_key").isNotNull()
            & F.col("name").isNotNull()
        )
        .withColumn("block", F.concat_ws("|", F.col("birth_date").cast("string"), "city_key"))
    )
    sizes = keyed.groupBy("block").agg(F.count(F.lit(1)).alias("n"))
    small = sizes.filter((F.col("n") >= 2) & (F.col("n") <= max_block)).select("block")
    return keyed.join(small, "block", "left_semi")


def fuzzy_name_edges(
    latest: DataFrame, profiles: DataFrame, shared_pairs: DataFrame, conf: IdentityConf
) -> DataFrame:
    """Edges between CRM records with a close but not identical name, the same birth
    date and city, and no shared identifier (``shared_pairs``: one (x, y), x < y, of
    records already sharing a value node).

    Output grain: one edge crm x -> crm y (x < y), rule ``fuzzy_name_dob_city``,
    confidence from conf (``fuzzy.confidence``).
    """
    f = conf.fuzzy
    grp = _blocked_profiles(latest, profiles, f.max_block_size)
    a, b = grp.alias("a"), grp.alias("b")
    pairs = a.join(
        b, (F.col("a.block") == F.col("b.block")) & (F.col("a.crm_id") < F.col("b.crm_id"))
    ).filter((F.col("a.name") != F.col("b.name")) & names_close(conf) & ~never_link(conf))
    edges = pairs.select(
        F.col("a.crm_id").alias("x"),
        F.col("b.crm_id").alias("y"),
        F.greatest("a.seen", "b.seen").alias("seen"),
    ).join(shared_pairs, ["x", "y"], "left_anti")
    return edges.select(
        F.lit("crm").alias("src_source"),
        F.col("x").alias("src_key"),
        F.lit("crm").alias("dst_source"),
        F.col("y").alias("dst_key"),
        F.lit("fuzzy_name_dob_city").alias("rule"),
        F.lit(f.confidence).alias("confidence"),
        F.col("seen").alias("first_seen"),
        F.col("seen").alias("last_seen"),
    )
