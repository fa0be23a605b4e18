"""Web redeliveries across batches are found by bronze's ``_event_key`` (xxhash64 of the
event id, jobs.ingest.job.earlier_deliveries), with the event id itself deciding; a lake
from before the column gets it filled from its rows, and a column with nulls falls back
to the lookup by the id's text. Real ingests of real landing files, real Delta tables."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from jobs.ingest import job as ingest_job
from jobs.ingest.job import ingest
from tests.ingest.landing_fixtures import event, write_web

D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"
WEB = "bronze/web_events"


def _dups(lake) -> list[tuple]:
    rows = lake.read("bronze/web_event_duplicates").collect()
    return sorted((r.event_id, r._source_file.rsplit("/", 1)[1]) for r in rows)


def _text_lookups(monkeypatch) -> list[int]:
    """Counts the lookups by the key's text (jobs.ingest.job.existing_with_keys)."""
    calls: list[int] = []
    real = ingest_job.existing_with_keys

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_job, "existing_with_keys", counted)
    return calls


def _two_nights(settings, make_ctx) -> None:
    landing = settings.paths.landing
    write_web(landing, D1, "001", [event("E1", "2026-11-01T10:00:00+08:00"),
                                   event("E2", "2026-11-01T11:00:00+08:00")])  # fmt: skip
    ingest(make_ctx(D1), "web")
    # E1 again a day later, in another file, beside a new event.
    write_web(landing, D2, "001", [event("E1", "2026-11-01T10:00:00+08:00"),
                                   event("E3", "2026-11-02T09:00:00+08:00")])  # fmt: skip


def test_redelivery_found_by_the_lookup_key(spark, settings, make_ctx, monkeypatch):
    _two_nights(settings, make_ctx)
    calls = _text_lookups(monkeypatch)
    ingest(make_ctx(D2), "web")
    lake = make_ctx(D2).lake
    assert calls == []  # found by the key column alone
    assert _dups(lake) == [("E1", "events_20261102_001.jsonl")]
    rows = lake.read(WEB).select("event_id", "_event_key", F.xxhash64("event_id").alias("h"))
    assert sorted(r.event_id for r in rows.collect()) == ["E1", "E2", "E3"]
    assert all(r._event_key == r.h for r in rows.collect())
    assert lake.never_null(WEB, "_event_key")
    # The engine's xxhash64 is Spark's: the value Spark's own documentation gives.
    same = spark.sql("SELECT xxhash64('Spark', array(123), 2) AS h").first().h
    assert same == 5602566077635097486


def test_a_lake_from_before_the_column_gets_it_filled(spark, settings, make_ctx, monkeypatch):
    _two_nights(settings, make_ctx)
    lake = make_ctx(D1).lake
    older = lake.read(WEB).drop("_event_key")
    older.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(
        "_business_date"
    ).save(lake.path(WEB))
    assert "_event_key" not in lake.read(WEB).columns
    calls = _text_lookups(monkeypatch)
    ingest(make_ctx(D2), "web")
    assert calls == []
    assert _dups(lake) == [("E1", "events_20261102_001.jsonl")]
    filled = lake.read(WEB).filter("event_id = 'E2'").select("_event_key", F.xxhash64("event_id"))
    assert filled.first()[0] == filled.first()[1] is not None


def test_nulls_in_the_key_column_fall_back_to_the_text(spark, settings, make_ctx, monkeypatch):
    _two_nights(settings, make_ctx)
    lake = make_ctx(D1).lake
    nulled = lake.read(WEB).withColumn("_event_key", F.lit(None).cast("long"))
    nulled.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(
        "_business_date"
    ).save(lake.path(WEB))
    assert not lake.never_null(WEB, "_event_key")
    calls = _text_lookups(monkeypatch)
    ingest(make_ctx(D2), "web")
    assert calls == [1]
    assert _dups(lake) == [("E1", "events_20261102_001.jsonl")]


@pytest.mark.parametrize("limit", [0])
def test_many_key_hits_fall_back_to_the_text(spark, settings, make_ctx, monkeypatch, limit):
    """Above MAX_KEY_HITS (here 0) the hits are not fetched one by one."""
    _two_nights(settings, make_ctx)
    monkeypatch.setattr(ingest_job, "MAX_KEY_HITS", limit)
    calls = _text_lookups(monkeypatch)
    ingest(make_ctx(D2), "web")
    assert calls == [1]
    assert _dups(make_ctx(D2).lake) == [("E1", "events_20261102_001.jsonl")]
