"""Quality step: validate each source's batch of this run with Great Expectations.

The suites in ``expectations/`` are the same ones that split rows into bronze
and quarantine (jobs.ingest.rules). Here they validate the whole batch the
ingestion steps checked in this run, keep the results per run in a file Data
Context under ``<work>/gx`` (rendered as Data Docs HTML) and in
``meta/quality_results``, and fail the run when a source's quarantine rate
crosses ``ingest.max_quarantine_rate``.

The rate counts the rows of the run's files sent to quarantine, out of the rows
that were new: exact repeats of rows already taken in (a file re-sent under a
new name) are duplicates, not bad rows, and count on neither side. Rows kept
with an invalid optional field nulled (``_field_issues``) are counted per rule
(``fields_nulled_<source>``), not as quarantined.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pyspark.sql import functions as F

from jobs import storage
from jobs.config import EXPECTATIONS_DIR
from jobs.context import RunContext
from jobs.ingest.job import staging_dir
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


def _suite(source: str):
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    doc = json.loads((EXPECTATIONS_DIR / f"{source}.json").read_text(encoding="utf-8"))
    suite = gx.ExpectationSuite(name=f"cdp_{source}", meta=doc.get("meta") or {})
    for exp in doc["expectations"]:
        suite.add_expectation_configuration(
            ExpectationConfiguration(
                type=exp["type"],
                kwargs=exp["kwargs"],
                meta=exp.get("meta"),
                description=exp.get("description"),
            )
        )
    return suite


def validate_batch(ctx: RunContext, source: str, batch) -> list[dict]:
    """Run ``expectations/<source>.json`` on ``batch`` (staged text rows) and render its Data
    Docs; return one dict per expectation. (:func:`run` validates every source in one
    Data Context and renders the docs once.)"""
    context = _context(gx_root(ctx))
    rows, ids = _validate(context, ctx, source, batch)
    build_docs(context, ids)
    return rows


def _validate(context, ctx: RunContext, source: str, batch) -> tuple[list[dict], list]:
    """(one dict per expectation, the identifiers of the stored validation results)."""
    import great_expectations as gx

    datasource = context.data_sources.add_or_update_spark(name="cdp_landing")
    asset_name = f"{source}_batch"
    asset = next(
        (a for a in datasource.assets if a.name == asset_name), None
    ) or datasource.add_dataframe_asset(name=asset_name)
    batch_def = next(
        (b for b in asset.batch_definitions if b.name == "run"), None
    ) or asset.add_batch_definition_whole_dataframe("run")
    suite = context.suites.add_or_update(_suite(source))
    vd = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{source}_rows", data=batch_def, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"{source}_nightly",
            validation_definitions=[vd],
            # Data Docs are built once per run for every source (build_docs), not here.
            actions=[],
            # No sample values in results or Data Docs: quarantine holds the rows, and a
            # sample of bad birth dates or names would put PII in HTML files.
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 0},
        )
    )
    run_id = gx.RunIdentifier(run_name=f"{ctx.as_of_str}_{ctx.run_id}")
    result = checkpoint.run(batch_parameters={"dataframe": batch}, run_id=run_id)
    out = []
    for validation in result.run_results.values():
        for i, r in enumerate(validation.results):
            cfg = r.expectation_config
            res = r.result or {}
            unexpected = res.get("unexpected_count")
            if unexpected is None and isinstance(res.get("observed_value"), int | float):
                unexpected = int(res["observed_value"])
            out.append(
                {
                    "expectation_index": i,
                    "rule": (cfg.meta or {}).get("rule"),
                    "expectation_type": cfg.type,
                    "column": cfg.kwargs.get("column"),
                    "success": bool(r.success),
                    "element_count": res.get("element_count"),
                    "unexpected_count": unexpected,
                }
            )
    return out, list(result.run_results)


def build_docs(context, result_ids: list) -> None:
    """Render this run's validation results and the Data Docs index, in one build."""
    if result_ids:
        context.build_data_docs(resource_identifiers=result_ids, build_index=True)


def fields_nulled(batch) -> dict[str, int]:
    """Rows kept with an optional field nulled, by rule, in a checked batch (jobs.ingest)."""
    kept = batch.filter(F.size("_reasons") == 0).select(F.explode("_field_issues").alias("i"))
    counts = kept.groupBy(F.col("i.rule").alias("rule")).count().collect()
    return {r.rule: int(r["count"]) for r in sorted(counts, key=lambda r: r.rule)}


def quarantine_rates(ctx: RunContext) -> tuple[dict, int, list[str]]:
    """Each source's quarantine rate in this run: (figures, rows received, sources too bad).

    Rate = quarantined / (received - exact duplicates); a source fails when the
    rate crosses ``max_quarantine_rate`` and it received ``min_rows_for_rate``
    new rows (or none of them was usable).
    """
    conf = ctx.settings.ingest
    manifest = ctx.lake.read("meta/ingest_manifest").filter(F.col("run_id") == ctx.run_id)
    sums = manifest.groupBy("source").agg(
        F.sum("rows_total").alias("total"),
        F.sum("rows_bad").alias("bad"),
        F.sum("rows_duplicate").alias("dups"),
    )
    figures, rows_in, too_bad = {}, 0, []
    for r in sums.collect():
        total, bad, dups = int(r.total or 0), int(r.bad or 0), int(r.dups or 0)
        rows_in += total
        new = total - dups
        rate = bad / new if new else 0.0
        figures[f"quarantine_rate_{r.source}"] = round(rate, 5)
        enough = new >= conf.min_rows_for_rate or (bad == new and new > 0)
        if rate > conf.max_quarantine_rate and enough:
            dup_note = (
                f", {dups} exact duplicates of rows already taken in not counted" if dups else ""
            )
            too_bad.append(
                f"{r.source}: {bad} of {new} rows ({rate:.1%}) sent to quarantine{dup_note}"
            )
    return figures, rows_in, too_bad


def run(ctx: RunContext) -> dict:
    sources = ctx.settings.ingest.sources
    limit = ctx.settings.ingest.max_quarantine_rate
    rows, figures, result_ids, context = [], {}, [], None
    for source in sources:
        checked = storage.join(staging_dir(ctx, source), "checked")
        if not storage.exists(checked):
            continue  # no new file of this source in this run: nothing to validate
        context = context or _context(gx_root(ctx))  # one Data Context per run
        batch = ctx.spark.read.format("delta").load(checked)
        source_rows, ids = _validate(context, ctx, source, batch)
        rows += [{"source": source, **r} for r in source_rows]
        result_ids += ids
        nulled = fields_nulled(batch)
        if nulled:
            figures[f"fields_nulled_{source}"] = nulled
    if context is not None:
        build_docs(context, result_ids)
    rates, rows_in, too_bad = quarantine_rates(ctx)
    figures.update(rates)
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
            "data_docs": str(data_docs_index(ctx.settings.paths.work)) if rows else None,
        }
    )
    if too_bad:
        raise QualityThresholdExceeded(
            f"quarantine rate above {limit:.0%}: "
            + "; ".join(too_bad)
            + f" (see {data_docs_index(ctx.settings.paths.work)})"
        )
    return figures
