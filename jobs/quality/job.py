"""Quality step: validate each source's batch of this run against its Great Expectations suite.

The suites in ``expectations/`` are the same ones that split rows into bronze
and quarantine (jobs.ingest.rules compiles each expectation into a Spark
predicate). Here every expectation of a suite is checked over the whole batch
the ingestion steps staged in this run, in one aggregation per source and one Spark
query for all sources (a night's step costs what its rows cost, not a query per
expectation or per source); the results
go to ``meta/quality_results`` and, as GX validation results, to a file Data
Context under ``<work>/gx`` rendered as Data Docs HTML (by every run, or with
``ingest.data_docs: on_failure`` only by a failing one: a night that passes then never
imports GX). The run fails when a
source's quarantine rate crosses ``ingest.max_quarantine_rate``.

The rate counts the rows of the run's files sent to quarantine, out of the rows
that were new: exact repeats of rows already taken in (a file re-sent under a
new name) are duplicates, not bad rows, and count on neither side. Rows kept
with an invalid optional field nulled (``_field_issues``) are counted per rule
(``fields_nulled_<source>``), not as quarantined. POS points are reconciled against
the loyalty ledger (jobs.quality.points, ``meta/points_reconciliation``).
"""

from __future__ import annotations

import functools
import json
import logging
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import storage
from jobs.collect import collect_all
from jobs.config import EXPECTATIONS_DIR
from jobs.context import RunContext
from jobs.ingest.job import checked_paths, staging_dir
from jobs.ingest.rules import field_issue_checks, load_rules
from jobs.quality.points import figures as points_figures
from jobs.quality.points import reconcile as reconcile_points
from jobs.schemas import table_schema

log = logging.getLogger(__name__)


class QualityThresholdExceeded(RuntimeError):
    """Too large a share of a source's rows went to quarantine."""


def gx_root(ctx: RunContext) -> Path:
    return ctx.settings.paths.work / "gx"


def data_docs_index(work: Path) -> Path:
    """Where the Data Docs site of the lake's runs is (``index.html``)."""
    return work / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _context(root: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _configurations(source: str) -> list:
    """The expectations of ``expectations/<source>.json`` as GX configurations, in file order."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    doc = json.loads((EXPECTATIONS_DIR / f"{source}.json").read_text(encoding="utf-8"))
    return [
        ExpectationConfiguration(
            type=exp["type"],
            kwargs=exp["kwargs"],
            meta=exp.get("meta"),
            description=exp.get("description"),
        )
        for exp in doc["expectations"]
    ]


def _suite(source: str):
    import great_expectations as gx

    doc = json.loads((EXPECTATIONS_DIR / f"{source}.json").read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(name=f"cdp_{source}", meta=doc.get("meta") or {})
    for config in _configurations(source):
        suite.add_expectation_configuration(config)
    return suite


def _batch_sums(source: str, batch: DataFrame) -> DataFrame:
    """One row of figures on ``batch`` (the run's checked rows of ``source``, grain: one row
    read), columns prefixed ``<source>__``: ``rows``; ``e<i>``, the rows breaking expectation
    i of the suite; ``f<j>``, the kept rows with optional-field issue j
    (jobs.ingest.rules.field_issue_checks) nulled."""
    kept = F.size("_reasons") == 0
    sums = [F.count(F.lit(1)).alias(f"{source}__rows")]
    sums += [
        F.sum(F.expr(rule.violation_sql).cast("long")).alias(f"{source}__e{i}")
        for i, rule in enumerate(load_rules(source))
    ]
    sums += [
        F.sum((kept & F.expr(broken)).cast("long")).alias(f"{source}__f{j}")
        for j, (_, _, broken) in enumerate(field_issue_checks(source))
    ]
    return batch.agg(*sums)


def checks_query(batches: dict[str, DataFrame]) -> DataFrame:
    """Every source's suite checked over its batch: one row for all sources.

    ``batches``: source -> the run's checked rows (jobs.ingest). Each expectation is the
    Spark predicate jobs.ingest.rules compiles from the suite (true when a row breaks it),
    summed in one aggregation per source, the sources' one-row results joined (read with
    :func:`read_checks`): one pass over each batch however many expectations its suite holds.
    """
    return reduce(DataFrame.crossJoin, [_batch_sums(s, b) for s, b in batches.items()])


def read_checks(row: dict, sources: list[str]) -> dict[str, tuple[list[dict], dict[str, int]]]:
    """Per source of :func:`checks_query`'s row: one dict per expectation in suite order,
    and the rows kept with an optional field nulled by rule."""
    return {s: (_expectation_results(s, row), _fields_nulled(s, row)) for s in sources}


def _expectation_results(source: str, row: dict) -> list[dict]:
    rows = int(row[f"{source}__rows"])
    results = []
    for i, rule in enumerate(load_rules(source)):
        bad = int(row[f"{source}__e{i}"] or 0)
        results.append(
            {
                "expectation_index": i,
                "rule": rule.name,
                "expectation_type": rule.type,
                "column": rule.kwargs.get("column"),
                "success": bad == 0,
                "element_count": rows,
                "unexpected_count": bad,
            }
        )
    return results


def _fields_nulled(source: str, row: dict) -> dict[str, int]:
    """Rows kept with an optional field nulled, by rule (rules that nulled none left out)."""
    counts: dict[str, int] = {}
    for j, (_, name, _) in enumerate(field_issue_checks(source)):
        counts[name] = counts.get(name, 0) + int(row[f"{source}__f{j}"] or 0)
    return {name: n for name, n in sorted(counts.items()) if n}


def write_data_docs(ctx: RunContext, results: dict[str, list[dict]]) -> Path:
    """Render this run's validation results as Great Expectations Data Docs.

    ``results``: per source, the dicts of :func:`validate_batch`. They become GX
    validation results (one per source, run name ``<date>_<run_id>``) in the file Data
    Context under ``<work>/gx``; only these and their suites are rendered, then the index.
    No sample values are kept: quarantine holds the rows, and a sample of bad birth dates
    or names would put PII in HTML files.
    """
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
        RunIdentifier,
    )
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _context(gx_root(ctx))
    run_id = RunIdentifier(run_name=f"{ctx.as_of_str}_{ctx.run_id}")
    built = []
    for source, checked in results.items():
        suite = context.suites.add_or_update(_suite(source))
        suite_id = ExpectationSuiteIdentifier(name=suite.name)
        outcomes = [
            ExpectationValidationResult(
                success=r["success"],
                expectation_config=config,
                result=_result_summary(r),
            )
            for r, config in zip(checked, _configurations(source), strict=True)
        ]
        validation = ExpectationSuiteValidationResult(
            success=all(r["success"] for r in checked),
            results=outcomes,
            suite_name=suite.name,
            statistics=_statistics(checked),
            meta={"run_id": run_id, "batch_spec": {"source": source, "run": ctx.run_id}},
        )
        result_id = ValidationResultIdentifier(
            expectation_suite_identifier=suite_id,
            run_id=run_id,
            batch_identifier=f"{source}_{ctx.as_of_str}",
        )
        context.validation_results_store.set(result_id, validation)
        built += [result_id, suite_id]
    context.build_data_docs(resource_identifiers=built, build_index=True)
    return data_docs_index(ctx.settings.paths.work)


def _result_summary(checked: dict) -> dict:
    rows, bad = checked["element_count"], checked["unexpected_count"]
    return {
        "element_count": rows,
        "unexpected_count": bad,
        "unexpected_percent": 100.0 * bad / rows if rows else 0.0,
        "partial_unexpected_list": [],
    }


def _statistics(checked: list[dict]) -> dict:
    passed = sum(r["success"] for r in checked)
    return {
        "evaluated_expectations": len(checked),
        "successful_expectations": passed,
        "unsuccessful_expectations": len(checked) - passed,
        "success_percent": 100.0 * passed / len(checked) if checked else None,
    }


def manifest_sums(ctx: RunContext) -> DataFrame:
    """Rows received, quarantined and exact duplicates per source in this run's files
    (meta/ingest_manifest; one row per source)."""
    manifest = ctx.lake.read("meta/ingest_manifest").filter(F.col("run_id") == ctx.run_id)
    return manifest.groupBy("source").agg(
        F.sum("rows_total").alias("total"),
        F.sum("rows_bad").alias("bad"),
        F.sum("rows_duplicate").alias("dups"),
    )


def quarantine_rates(ctx: RunContext, sums: list[dict]) -> tuple[dict, int, list[str]]:
    """Each source's quarantine rate in this run: (figures, rows received, sources too bad).

    ``sums``: the rows of :func:`manifest_sums`. Rate = quarantined / (received - exact
    duplicates); a source fails when the rate crosses ``max_quarantine_rate`` and it
    received ``min_rows_for_rate`` new rows (or none of them was usable).
    """
    conf = ctx.settings.ingest
    figures, rows_in, too_bad = {}, 0, []
    for r in sums:
        total, bad, dups = int(r["total"] or 0), int(r["bad"] or 0), int(r["dups"] or 0)
        rows_in += total
        new = total - dups
        rate = bad / new if new else 0.0
        figures[f"quarantine_rate_{r['source']}"] = round(rate, 5)
        enough = new >= conf.min_rows_for_rate or (bad == new and new > 0)
        if rate > conf.max_quarantine_rate and enough:
            dup_note = (
                f", {dups} exact duplicates of rows already taken in not counted" if dups else ""
            )
            too_bad.append(
                f"{r['source']}: {bad} of {new} rows ({rate:.1%}) sent to quarantine{dup_note}"
            )
    return figures, rows_in, too_bad


def _collect_figures(ctx: RunContext, batches: dict[str, DataFrame]) -> dict[str, list[dict]]:
    """The run's suite checks, the manifest's sums and the points reconciliation (written
    first, then counted) in one Spark query (jobs.collect); ``points`` is absent when the
    reconciliation was not checked."""
    parts = {"rates": manifest_sums(ctx)}
    if batches:
        parts["checks"] = checks_query(batches)
    reconciliation = reconcile_points(ctx)  # POS points vs the loyalty ledger: listed, not fixed
    if reconciliation is not None:
        parts["points"] = reconciliation
    return collect_all(parts)


def run(ctx: RunContext) -> dict:
    sources = ctx.settings.ingest.sources
    limit = ctx.settings.ingest.max_quarantine_rate
    rows, figures, by_source = [], {}, {}
    batches = {}
    for source in sources:
        paths = checked_paths(ctx, source)  # one per ingest batch
        if paths:
            frames = [ctx.spark.read.parquet(p) for p in paths]
            batches[source] = functools.reduce(DataFrame.unionByName, frames)
    collected = _collect_figures(ctx, batches)
    checks = read_checks(collected["checks"][0], list(batches)) if batches else {}
    for source, (results, nulled) in checks.items():
        by_source[source] = results
        rows += [{"source": source, **r} for r in results]
        if nulled:
            figures[f"fields_nulled_{source}"] = nulled
    rates, rows_in, too_bad = quarantine_rates(ctx, collected["rates"])
    docs = None
    if by_source and (ctx.settings.ingest.data_docs == "every_run" or too_bad):
        docs = write_data_docs(ctx, by_source)
    figures.update(rates)
    figures.update(points_figures(collected.get("points")))
    if rows:
        schema = table_schema("meta/quality_results").struct
        records = [
            (
                ctx.run_id,
                ctx.as_of,
                r["source"],
                r["expectation_index"],
                r["rule"],
                r["expectation_type"],
                r["column"],
                r["success"],
                r["element_count"],
                r["unexpected_count"],
                None,
            )
            for r in rows
        ]
        df = ctx.spark.createDataFrame(records, schema).withColumn(
            "validated_at", F.current_timestamp()
        )
        ctx.lake.replace_where(df, "meta/quality_results", f"run_id = '{ctx.run_id}'")
    for source in sources:
        storage.remove_tree(staging_dir(ctx, source))
    figures.update(
        {
            "rows_in": rows_in,
            "expectations": len(rows),
            "failed_expectations": sum(not r["success"] for r in rows),
            "data_docs": str(docs) if docs else None,
        }
    )
    if too_bad:
        raise QualityThresholdExceeded(
            f"quarantine rate above {limit:.0%}: "
            + "; ".join(too_bad)
            + (f" (see {docs})" if docs else " (see meta.quality_results)")
        )
    return figures
