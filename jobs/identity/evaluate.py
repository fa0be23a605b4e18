"""`cdp eval-identity --truth DIR`: score silver/member_xref against the generator's truth.

Pairwise scores over source identities: a predicted pair is two identities with the
same member_id, a true pair two linkable identities with the same person_id.
Pair counts come from group sizes (n * (n - 1) / 2), never from listing pairs:

* TP = sum over (member_id, person_id) groups of C(n, 2)
* predicted pairs = sum over member_id groups of C(n, 2)
* true pairs = sum over person_id groups of C(n, 2)

Only linkable truth identities are scored; an identity missing from the xref or
without a member counts as a cluster of its own. Truth pos_phone keys are raw
phones: they are HMAC-hashed with the PII key to compare with the xref.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.identity import normalize as N
from jobs.privacy.pii import hmac_col


def _pairs(n: Column) -> Column:
    return (n * (n - 1) / 2).cast("long")


def read_truth(spark: SparkSession, truth_dir: Path, key: bytes) -> DataFrame:
    """truth/identities.csv with keys in xref form. Grain: one source identity."""
    t = spark.read.option("header", "true").csv(str(Path(truth_dir) / "identities.csv"))
    phone = N.norm_phone(F.col("source_key"))
    source_key = (
        F.when(
            F.col("source") == "pos_phone", hmac_col(F.coalesce(phone, F.col("source_key")), key)
        )
        .when(F.col("source") == "pos_card", N.norm_card(F.col("source_key")))
        .otherwise(N.norm_text_id(F.col("source_key")))
    )
    linkable = F.lower(F.trim(F.col("linkable"))).isin("true", "1", "yes", "y", "t")
    return t.select(
        "person_id", "source", source_key.alias("source_key"), linkable.alias("linkable")
    )


def score(truth: DataFrame, xref: DataFrame) -> dict:
    """Pairwise precision, recall, F1 and purity of ``xref`` (one source identity with
    member_id) against ``truth`` (one source identity with person_id, linkable)."""
    t = truth.filter(F.col("linkable")).dropDuplicates(["source", "source_key"])
    x = xref.select("source", "source_key", "member_id").dropDuplicates(["source", "source_key"])
    j = t.join(x, ["source", "source_key"], "left")
    # An identity without a member is a singleton cluster of its own.
    j = j.withColumn(
        "pred", F.coalesce("member_id", F.concat(F.lit("~"), "source", F.lit(":"), "source_key"))
    )
    both = j.groupBy("pred", "person_id").agg(F.count(F.lit(1)).alias("n"))
    by_pred = both.groupBy("pred").agg(
        F.sum("n").alias("n"),
        F.max("n").alias("n_major"),
        F.count(F.lit(1)).alias("n_persons"),
    )
    by_person = j.groupBy("person_id").agg(
        F.count(F.lit(1)).alias("n"), F.countDistinct("pred").alias("n_preds")
    )
    tp = both.agg(F.sum(_pairs(F.col("n")))).collect()[0][0] or 0
    pa = by_pred.agg(
        F.sum(_pairs(F.col("n"))).alias("pred_pairs"),
        F.sum("n_major").alias("major"),
        F.sum("n").alias("n"),
        F.sum((F.col("n_persons") > 1).cast("int")).alias("mixed"),
        F.count(F.lit(1)).alias("clusters"),
    ).collect()[0]
    ta = by_person.agg(
        F.sum(_pairs(F.col("n"))).alias("true_pairs"),
        F.sum((F.col("n_preds") > 1).cast("int")).alias("fragmented"),
        F.count(F.lit(1)).alias("persons"),
    ).collect()[0]
    pred_pairs, true_pairs = pa["pred_pairs"] or 0, ta["true_pairs"] or 0
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    missing = j.filter(F.col("member_id").isNull()).count()
    return {
        "identities": pa["n"] or 0,
        "persons": ta["persons"] or 0,
        "clusters": pa["clusters"] or 0,
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
        "true_positive_pairs": tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "purity": (pa["major"] or 0) / pa["n"] if pa["n"] else 1.0,
        "mixed_clusters": pa["mixed"] or 0,
        "fragmented_persons": ta["fragmented"] or 0,
        "identities_without_member": missing,
    }


def rule_scores(truth: DataFrame, edges: DataFrame) -> dict:
    """Per edge rule: edges whose two ends are both truth identities, and how many of
    them join two different persons (a false link made by that rule).

    Inputs: ``truth`` (:func:`read_truth`); ``edges`` silver/identity_edges. Output:
    ``rule[<rule>]`` -> "edges=N false=M precision=P" (edges to value nodes such as
    e-mail or ID card have no truth identity at the far end and are left out).
    """
    t = truth.select("source", "source_key", "person_id").dropDuplicates(["source", "source_key"])
    src = t.select(
        F.col("source").alias("src_source"), F.col("source_key").alias("src_key"),
        F.col("person_id").alias("p_src"),
    )  # fmt: skip
    dst = t.select(
        F.col("source").alias("dst_source"), F.col("source_key").alias("dst_key"),
        F.col("person_id").alias("p_dst"),
    )  # fmt: skip
    per_rule = (
        edges.join(src, ["src_source", "src_key"])
        .join(dst, ["dst_source", "dst_key"])
        .groupBy("rule")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum((F.col("p_src") != F.col("p_dst")).cast("int")).alias("false"),
        )
        .orderBy("rule")
        .collect()
    )
    return {
        f"rule[{r['rule']}]": f"edges={r['n']} false={r['false']} "
        f"precision={(r['n'] - r['false']) / r['n']:.4f}"
        for r in per_rule
    }


def source_scores(truth: DataFrame, xref: DataFrame) -> dict:
    """Precision, recall and F1 over the pairs of one source's identities, per source."""
    out = {}
    for r in truth.select("source").distinct().orderBy("source").collect():
        s = score(truth.filter(F.col("source") == r["source"]), xref)
        out[f"source[{r['source']}]"] = (
            f"precision={s['precision']:.4f} recall={s['recall']:.4f} f1={s['f1']:.4f} "
            f"true_pairs={s['true_pairs']}"
        )
    return out


def junk_check(spark: SparkSession, truth_dir: Path, xref: DataFrame, key: bytes) -> dict:
    """How many of the truth's junk values (placeholder phones) ended up in a member."""
    path = Path(truth_dir) / "junk_values.csv"
    if not path.exists():
        return {"junk_values": 0, "junk_values_in_a_member": 0}
    j = spark.read.option("header", "true").csv(str(path))
    phones = j.filter(F.lower("id_type").isin("phone", "pos_phone")).select(
        hmac_col(F.coalesce(N.norm_phone(F.col("value")), F.col("value")), key).alias("source_key")
    )
    hit = xref.filter((F.col("source") == "pos_phone") & F.col("member_id").isNotNull()).join(
        phones, "source_key", "left_semi"
    )
    return {"junk_values": j.count(), "junk_values_in_a_member": hit.count()}


def change_counts(merges_etc: DataFrame, blocked: DataFrame) -> dict:
    """Merges/splits/dissolved over all runs, blocked values of the latest run by reason."""
    out = {"merges_total": 0, "splits_total": 0, "dissolved_total": 0}
    for r in merges_etc.groupBy("change_type").agg(F.count(F.lit(1)).alias("n")).collect():
        name = (
            "dissolved_total" if r["change_type"] == "dissolved" else f"{r['change_type']}s_total"
        )
        out[name] = r["n"]
    last = blocked.agg(F.max("as_of_date")).collect()[0][0]
    if last is not None:
        for r in (
            blocked.filter(F.col("as_of_date") == F.lit(last))
            .groupBy("reason")
            .agg(F.count(F.lit(1)).alias("n"))
            .collect()
        ):
            out[f"blocked_values[{r['reason']}]"] = r["n"]
    return out


def evaluate(settings, truth_dir: Path, spark: SparkSession | None = None) -> dict:
    """Every figure of the evaluation as a dict (used by the CLI and the tests)."""
    from jobs.context import RunContext
    from jobs.engine import get_spark

    ctx = RunContext(settings=settings, spark=spark or get_spark(settings.engine), as_of=_today())
    lake, key = ctx.lake, ctx.pii_key
    xref = lake.read("silver/member_xref")
    truth = read_truth(ctx.spark, truth_dir, key)
    res = score(truth, xref)
    res.update(source_scores(truth, xref))
    res.update(rule_scores(truth, lake.read("silver/identity_edges")))
    res.update(junk_check(ctx.spark, truth_dir, xref, key))
    res.update(
        change_counts(
            lake.read("silver/member_id_changes"), lake.read("silver/blocked_identifiers")
        )
    )
    return res


def _today():
    import datetime as dt

    return dt.date.today()


def evaluate_cli(settings, truth_dir: Path) -> dict:
    """Print the evaluation, one figure a line."""
    import typer

    res = evaluate(settings, truth_dir)
    for k in ("precision", "recall", "f1", "purity"):
        typer.echo(f"{k:<28} {res[k]:.4f}")
    for k, v in res.items():
        if k not in ("precision", "recall", "f1", "purity"):
            typer.echo(f"{k:<28} {v}")
    return res
