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

from jobs.columns import sorted_distinct
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


PAIR_COLUMNS = [
    "kind", "member_a", "source_a", "key_a", "person_a",
    "member_b", "source_b", "key_b", "person_b", "rule",
]  # fmt: skip


def _scored_identities(truth: DataFrame, xref: DataFrame) -> DataFrame:
    """One linkable truth identity: source, source_key, person_id, member_id and pred
    (its member, or a cluster of its own when it has none)."""
    t = truth.filter(F.col("linkable")).dropDuplicates(["source", "source_key"])
    x = xref.select("source", "source_key", "member_id").dropDuplicates(["source", "source_key"])
    return t.join(x, ["source", "source_key"], "left").withColumn(
        "pred", F.coalesce("member_id", F.concat(F.lit("~"), "source", F.lit(":"), "source_key"))
    )


def _crossing_rules(ids: DataFrame, edges: DataFrame) -> DataFrame:
    """Per member: the sorted rules of its edges that join two persons, directly (both
    ends truth identities of different persons) or through a value node (e-mail, ID
    card) whose edges come from several persons. Output grain: one pred, ``rules``."""
    who = ids.select(
        F.col("source").alias("src_source"), F.col("source_key").alias("src_key"),
        F.col("person_id").alias("p_src"), "pred",
    )  # fmt: skip
    dst = ids.select(
        F.col("source").alias("dst_source"), F.col("source_key").alias("dst_key"),
        F.col("person_id").alias("p_dst"),
    )  # fmt: skip
    e = edges.join(who, ["src_source", "src_key"]).join(dst, ["dst_source", "dst_key"], "left")
    shared = (
        e.filter(F.col("p_dst").isNull())
        .groupBy("dst_source", "dst_key")
        .agg(F.countDistinct("p_src").alias("n_persons"))
        .filter(F.col("n_persons") > 1)
    )
    via_value = e.join(shared, ["dst_source", "dst_key"], "left_semi")
    direct = e.filter(F.col("p_dst").isNotNull() & (F.col("p_dst") != F.col("p_src")))
    return (
        direct.select("pred", "rule")
        .unionByName(via_value.select("pred", "rule"))
        .groupBy("pred")
        .agg(F.concat_ws(",", sorted_distinct("rule")).alias("rules"))
    )


def error_pairs(truth: DataFrame, xref: DataFrame, edges: DataFrame) -> DataFrame:
    """The false pairs (two persons' identities in one member) and the missed pairs (one
    person's identities in two clusters), with the rule of a false pair's direct edge,
    else ``via <rules>``: the member's edges that join two persons.

    Inputs: :func:`read_truth`, silver/member_xref, silver/identity_edges. Output grain:
    one pair (a < b by source, key); columns PAIR_COLUMNS, kind ``false`` or ``missed``.
    """
    ids = _scored_identities(truth, xref)
    a = ids.select(*[F.col(c).alias(f"{c}_a") for c in ids.columns])
    b = ids.select(*[F.col(c).alias(f"{c}_b") for c in ids.columns])
    ordered = (F.col("source_a") < F.col("source_b")) | (
        (F.col("source_a") == F.col("source_b")) & (F.col("source_key_a") < F.col("source_key_b"))
    )
    same_pred = F.col("pred_a") == F.col("pred_b")
    same_person = F.col("person_id_a") == F.col("person_id_b")
    false_pairs = a.join(b, same_pred & ~same_person & ordered).withColumn("kind", F.lit("false"))
    missed = a.join(b, same_person & ~same_pred & ordered).withColumn("kind", F.lit("missed"))
    direct = edges.groupBy(
        F.col("src_source").alias("source_a"), F.col("src_key").alias("source_key_a"),
        F.col("dst_source").alias("source_b"), F.col("dst_key").alias("source_key_b"),
    ).agg(F.concat_ws(",", sorted_distinct("rule")).alias("direct"))  # fmt: skip
    flipped = direct.select(
        F.col("source_b").alias("source_a"), F.col("source_key_b").alias("source_key_a"),
        F.col("source_a").alias("source_b"), F.col("source_key_a").alias("source_key_b"),
        F.col("direct").alias("flipped"),
    )  # fmt: skip
    keys = ["source_a", "source_key_a", "source_b", "source_key_b"]
    crossing = _crossing_rules(ids, edges).withColumnRenamed("pred", "pred_a")
    false_pairs = (
        false_pairs.join(direct, keys, "left")
        .join(flipped, keys, "left")
        .join(crossing, "pred_a", "left")
        .withColumn(
            "rule",
            F.coalesce("direct", "flipped", F.concat(F.lit("via "), F.col("rules")), F.lit("?")),
        )
    )
    return false_pairs.select(*_pair_columns()).unionByName(
        missed.withColumn("rule", F.lit(None).cast("string")).select(*_pair_columns())
    )


def _pair_columns() -> list[Column]:
    return [
        F.col("kind"),
        F.col("member_id_a").alias("member_a"), F.col("source_a"),
        F.col("source_key_a").alias("key_a"), F.col("person_id_a").alias("person_a"),
        F.col("member_id_b").alias("member_b"), F.col("source_b"),
        F.col("source_key_b").alias("key_b"), F.col("person_id_b").alias("person_b"),
        F.col("rule"),
    ]  # fmt: skip


def write_pairs(pairs: DataFrame, out: Path) -> None:
    """Write every pair to the one CSV file ``out`` (rows in no particular order)."""
    from jobs.exports.files import write_single_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_single_file(pairs, "csv", out, out.parent)


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


def pairs_report(
    settings, truth_dir: Path, out: Path, show: int = 20, spark: SparkSession | None = None
) -> tuple[list[dict], dict]:
    """Write every false and missed pair to the CSV ``out``; return the first ``show`` of
    them (false pairs first) and their counts (``false_pairs``, ``missed_pairs``)."""
    from jobs.context import RunContext
    from jobs.engine import get_spark

    ctx = RunContext(settings=settings, spark=spark or get_spark(settings.engine), as_of=_today())
    truth = read_truth(ctx.spark, truth_dir, ctx.pii_key)
    pairs = error_pairs(
        truth, ctx.lake.read("silver/member_xref"), ctx.lake.read("silver/identity_edges")
    )
    pairs = pairs.persist()
    write_pairs(pairs, out)
    counts = {"false_pairs": 0, "missed_pairs": 0}
    for r in pairs.groupBy("kind").agg(F.count(F.lit(1)).alias("n")).collect():
        counts[f"{r['kind']}_pairs"] = r["n"]
    first = pairs.orderBy("kind", "member_a", "source_a", "key_a", "source_b", "key_b")
    shown = [r.asDict() for r in first.limit(show).collect()] if show > 0 else []
    pairs.unpersist()
    return shown, counts


def default_pairs_out(settings) -> Path:
    """Where ``cdp eval-identity`` writes the pairs unless told: under the work folder."""
    return Path(settings.paths.work) / "eval_identity" / "pairs.csv"


def evaluate_cli(
    settings,
    truth_dir: Path,
    show_pairs: int = 20,
    pairs_out: Path | None = None,
    spark: SparkSession | None = None,
) -> dict:
    """Print the evaluation, one figure a line, then the first ``show_pairs`` false and
    missed pairs; all the pairs go to ``pairs_out`` (default :func:`default_pairs_out`)."""
    import typer

    res = evaluate(settings, truth_dir, spark)
    for k in ("precision", "recall", "f1", "purity"):
        typer.echo(f"{k:<28} {res[k]:.4f}")
    for k, v in res.items():
        if k not in ("precision", "recall", "f1", "purity"):
            typer.echo(f"{k:<28} {v}")
    out = pairs_out or default_pairs_out(settings)
    shown, counts = pairs_report(settings, truth_dir, out, show_pairs, spark)
    res.update(counts)
    typer.echo(
        f"false_pairs={counts['false_pairs']} missed_pairs={counts['missed_pairs']} "
        f"(all in {out}; first {len(shown)}):"
    )
    for p in shown:
        rule = f"  rule={p['rule']}" if p["kind"] == "false" else ""
        typer.echo(
            f"  {p['kind']:<6} {p['source_a']}:{p['key_a']} ({p['person_a']}, {p['member_a']})"
            f" ~ {p['source_b']}:{p['key_b']} ({p['person_b']}, {p['member_b']}){rule}"
        )
    return res
