"""The quality step validates the run's batches with Great Expectations."""

from __future__ import annotations

import pytest

from jobs.ingest.job import ingest
from jobs.quality.job import QualityThresholdExceeded, data_docs_index
from jobs.quality.job import run as quality_run
from tests.ingest.landing_fixtures import event, sale, write_pos, write_web

D1 = "2026-11-01"


def test_results_kept_docs_built_and_threshold(make_ctx, settings):
    write_pos(
        settings.paths.landing,
        D1,
        "S01",
        [
            sale("O1", 1, "2026-11-01 10:00:00"),
            sale("O2", 1, "2026-11-01 10:00:00"),
            "O3,1,S01,2026-11-01 10:00:00,SALE,,,,SKU1,生鲜,-1,10.00,0,10.00,cash,,",
        ],
    )
    lenient = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"max_quarantine_rate": 0.5})}
    )
    ctx = make_ctx(D1, settings=lenient)
    ingest(ctx, "pos")
    figures = quality_run(ctx)
    assert figures["quarantine_rate_pos"] == pytest.approx(1 / 3, abs=1e-4)
    results = ctx.lake.read("meta/quality_results").filter(f"run_id = '{ctx.run_id}'")
    qty = [
        r
        for r in results.collect()
        if r.rule == "qty_invalid" and r.expectation_type.endswith("match_regex")
    ]
    assert len(qty) == 1 and qty[0].success is False and qty[0].unexpected_count == 1
    assert data_docs_index(settings.paths.work).exists()

    strict = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(
                update={"max_quarantine_rate": 0.1, "min_rows_for_rate": 1}
            )
        }
    )
    write_pos(
        settings.paths.landing,
        "2026-11-02",
        "S01",
        ["O4,1,S01,2026-11-02 10:00:00,SALE,,,,SKU1,生鲜,0,10.00,0,0.00,cash,,"],
    )
    ctx2 = make_ctx("2026-11-02", settings=strict)
    ingest(ctx2, "pos")
    with pytest.raises(QualityThresholdExceeded, match="pos: 1 of 1 rows"):
        quality_run(ctx2)


def test_small_batches_do_not_fail_the_night(make_ctx, settings):
    # 1 bad row of 2 is 50%, above the 20% default, but 2 rows are below min_rows_for_rate.
    write_pos(
        settings.paths.landing,
        D1,
        "S01",
        [
            sale("O1", 1, "2026-11-01 10:00:00"),
            "O3,1,S01,2026-11-01 10:00:00,SALE,,,,SKU1,生鲜,-1,10.00,0,10.00,cash,,",
        ],
    )
    ctx = make_ctx(D1)
    ingest(ctx, "pos")
    assert quality_run(ctx)["quarantine_rate_pos"] == 0.5


def test_exact_duplicates_do_not_count_and_the_message_says_what_it_counts(make_ctx, settings):
    """A re-sent file plus one bad new row: 1 of 1 new rows, the 3 duplicates named apart."""
    rows = [sale(f"O{i}", 1, "2026-11-01 10:00:00") for i in range(3)]
    write_pos(settings.paths.landing, D1, "S01", rows)
    ingest(make_ctx(D1), "pos")
    bad = "O9,1,S01,2026-11-02 10:00:00,SALE,,,,SKU1,生鲜,-1,10.00,0,10.00,cash,,"
    write_pos(settings.paths.landing, "2026-11-02", "S01", [*rows, bad])
    strict = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"min_rows_for_rate": 1})}
    )
    ctx = make_ctx("2026-11-02", settings=strict)
    res = ingest(ctx, "pos")
    assert (res["rows_in"], res["duplicates"], res["quarantined"]) == (4, 3, 1)
    with pytest.raises(QualityThresholdExceeded) as err:
        quality_run(ctx)
    message = str(err.value)
    assert "pos: 1 of 1 rows (100.0%) sent to quarantine" in message
    assert "3 exact duplicates of rows already taken in not counted" in message


def test_one_data_docs_build_per_run(make_ctx, settings, monkeypatch):
    """Data Docs are rendered once per run for all its sources (not once per source:
    each build re-renders the index of every night's results); a source that took in
    nothing in the run (crm here) is not validated."""
    from great_expectations.data_context.data_context.abstract_data_context import (
        AbstractDataContext,
    )

    write_pos(settings.paths.landing, D1, "S01", [sale("O1", 1, "2026-11-01 10:00:00")])
    write_web(settings.paths.landing, D1, "p1", [event("E1", "2026-11-01T10:00:00+08:00")])
    builds = []
    real = AbstractDataContext.build_data_docs

    def counting(self, *args, **kwargs):
        builds.append(kwargs.get("resource_identifiers"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractDataContext, "build_data_docs", counting)
    ctx = make_ctx(D1)
    for source in ("pos", "web"):
        ingest(ctx, source)
    quality_run(ctx)
    assert len(builds) == 1 and len(builds[0]) == 4  # each source: its result and its suite
    results = ctx.lake.read("meta/quality_results").filter(f"run_id = '{ctx.run_id}'")
    assert {r.source for r in results.select("source").distinct().collect()} == {"pos", "web"}
    assert data_docs_index(settings.paths.work).exists()


def test_all_sources_checked_in_one_query(make_ctx, settings, spark):
    """Every source's suite (and the fields nulled) and the quarantine rates are read in
    one Spark query a run, not two per source and one more: on a JVM engine each query
    costs ~0.5 CPU s whatever its rows."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from bench.count_queries import counting

    if not isinstance(spark, ConnectSession):
        pytest.skip("counted through the Spark Connect client (the embedded engine)")
    write_pos(settings.paths.landing, D1, "S01", [sale("O1", 1, "2026-11-01 10:00:00")])
    write_web(settings.paths.landing, D1, "p1", [event("E1", "2026-11-01T10:00:00+08:00")])
    ctx = make_ctx(D1)
    for source in ("pos", "web"):
        ingest(ctx, source)
    with counting() as counter:
        figures = quality_run(ctx)
    assert figures["expectations"] > 2 and figures["failed_expectations"] == 0
    reads = [site for (*_, kind, site), n in counter.by_site.items() for _ in range(n)
             if kind == "exec"]  # fmt: skip
    assert len(reads) == 1, reads


def test_data_docs_on_failure_only_for_a_failing_run(make_ctx, settings):
    """``ingest.data_docs: on_failure``: a passing run keeps its checks in
    meta/quality_results and renders no Data Docs; a run over the threshold renders them
    and its error points there."""
    on_failure = settings.model_copy(
        update={"ingest": settings.ingest.model_copy(update={"data_docs": "on_failure"})}
    )
    write_pos(settings.paths.landing, D1, "S01", [sale("O1", 1, "2026-11-01 10:00:00")])
    ctx = make_ctx(D1, settings=on_failure)
    ingest(ctx, "pos")
    figures = quality_run(ctx)
    assert figures["data_docs"] is None and figures["expectations"] > 0
    assert not data_docs_index(settings.paths.work).exists()
    results = ctx.lake.read("meta/quality_results").filter(f"run_id = '{ctx.run_id}'")
    assert results.count() == figures["expectations"]

    strict = on_failure.model_copy(
        update={
            "ingest": on_failure.ingest.model_copy(
                update={"max_quarantine_rate": 0.1, "min_rows_for_rate": 1}
            )
        }
    )
    bad = "O2,1,S01,2026-11-02 10:00:00,SALE,,,,SKU1,生鲜,0,10.00,0,0.00,cash,,"
    write_pos(settings.paths.landing, "2026-11-02", "S01", [bad])
    ctx2 = make_ctx("2026-11-02", settings=strict)
    ingest(ctx2, "pos")
    with pytest.raises(QualityThresholdExceeded, match="data_docs/local_site/index.html"):
        quality_run(ctx2)
    assert data_docs_index(settings.paths.work).exists()


def test_data_docs_setting_from_the_environment():
    from jobs.config import ConfigError, load_settings

    assert load_settings(env={}).ingest.data_docs == "every_run"
    assert load_settings(env={"CDP_DATA_DOCS": "on_failure"}).ingest.data_docs == "on_failure"
    with pytest.raises(ConfigError, match="data_docs"):
        load_settings(env={"CDP_DATA_DOCS": "sometimes"})
