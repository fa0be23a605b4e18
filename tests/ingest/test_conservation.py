"""Ingestion over a generated landing zone: nothing lost, every planted bad row found.

A planted row breaking a required field's rule is quarantined with its reason; one
breaking only an optional field's rule (CONTRACT 1) is kept in bronze with that
field null and the rule in ``_field_issues``.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.ingest.job import ingest
from jobs.sources import SOURCE_NAMES

pytestmark = pytest.mark.slow

CATEGORIES = {"生鲜", "美妆", "母婴", "家居", "服饰", "数码", "食品", "酒水"}


def _data_rows(path: Path) -> int | None:
    """Data rows of a landing file counted independently of the parser (None: unreadable gzip)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    return len(lines) - (1 if path.suffix == ".csv" else 0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from jobs.generate.landing import generate_landing

    out = tmp_path_factory.mktemp("gen") / "landing"
    summary = generate_landing(out, members=300, days=7, seed=11, end_date=dt.date(2026, 11, 20))
    return out, summary


@pytest.fixture(scope="module")
def ingested(generated, spark, tmp_path_factory):
    from jobs.config import load_settings, with_paths
    from jobs.context import RunContext

    landing, _ = generated
    base = tmp_path_factory.mktemp("lake")
    s = with_paths(
        load_settings(env={}),
        landing=landing,
        lake=base / "lake",
        exports=base / "exports",
        work=base / "work",
    )
    ctx = RunContext(settings=s, spark=spark, as_of=dt.date(2026, 11, 20))
    results = {src: ingest(ctx, src) for src in SOURCE_NAMES}
    return ctx, results


def test_every_row_is_in_bronze_or_quarantine(generated, ingested):
    landing, _ = generated
    ctx, _ = ingested
    lake = ctx.lake
    placed: Counter = Counter()
    for table in (
        "bronze/pos_lines",
        "bronze/web_events",
        "bronze/web_event_duplicates",
        "bronze/pos_line_duplicates",
        "bronze/crm_members",
        "quarantine/pos",
        "quarantine/web",
        "quarantine/crm",
        "bronze/loyalty_ledger",
        "bronze/loyalty_duplicates",
        "quarantine/loyalty",
    ):
        for r in (
            lake.read(table)
            .filter(F.col("_line_no").isNotNull())
            .groupBy("_source_file")
            .count()
            .collect()
        ):
            placed[r[0]] += r[1]
    unreadable = {
        r._source_file
        for r in lake.read("meta/ingest_manifest").filter("status = 'unreadable'").collect()
    }
    files = [
        p
        for p in landing.rglob("*")
        if p.is_file() and p.name != "_SUCCESS" and "truth" not in p.parts
    ]
    assert files
    for p in files:
        rel = p.relative_to(landing).as_posix()
        expected = _data_rows(p)
        if expected is None:
            assert rel in unreadable, rel
            continue
        assert placed[rel] == expected, rel


def test_planted_bad_rows_are_quarantined_with_their_reason(generated, ingested):
    from jobs.ingest.rules import field_rules

    landing, _ = generated
    ctx, _ = ingested
    truth = list(csv.DictReader((landing / "truth" / "bad_rows.csv").open(encoding="utf-8")))
    assert truth, "the generator planted no bad rows"
    got, kept = {}, {}
    for src in ("pos", "web", "crm"):
        for r in ctx.lake.read(f"quarantine/{src}").collect():
            got[(r._source_file, r._line_no)] = set(r._reasons)
    for table in ("bronze/pos_lines", "bronze/crm_members"):
        for r in ctx.lake.read(table).filter(F.size("_field_issues") > 0).collect():
            kept[(r._source_file, r._line_no)] = (r, {i.rule: i.field for i in r._field_issues})
    optional = {
        r.name for src in ("pos", "web", "crm") for rs in field_rules(src).values() for r in rs
    }
    n_kept = 0
    for t in truth:
        key = (t["file"], int(t["line_no"]) if t["line_no"] else None)
        if t["reason"] in optional:
            assert key in kept, f"row with an invalid optional field not kept: {t}"
            row, issues = kept[key]
            assert t["reason"] in issues, f"{t}: got {issues}"
            field = issues[t["reason"]]
            # The field is nulled; an empty opt-in means no consent (CONTRACT 1.3).
            assert row[field] is (False if field.startswith("opt_in_") else None), t
            n_kept += 1
            continue
        assert key in got, f"planted bad row not quarantined: {t}"
        assert t["reason"] in got[key], f"{t}: got {got[key]}"
    assert n_kept, "no planted optional-field issue"
    # Every other kept row with an issue holds one of the planted bad-checksum ID cards.
    junk = csv.DictReader((landing / "truth" / "junk_values.csv").open(encoding="utf-8"))
    bad_ids = {r["value"] for r in junk if r["kind"] == "bad_checksum"}
    planted = {(t["file"], int(t["line_no"])) for t in truth if t["reason"] in optional}
    others = [row for key, (row, _) in kept.items() if key not in planted]
    assert others and all(
        [(i.rule, i.value in bad_ids) for i in r._field_issues] == [("id_card_invalid", True)]
        and r.id_card_no is None
        for r in others
    )


def test_redeliveries_are_the_planted_ones(generated, ingested):
    landing, _ = generated
    ctx, _ = ingested
    truth = {
        (r["file"], int(r["line_no"]))
        for r in csv.DictReader((landing / "truth" / "duplicates.csv").open(encoding="utf-8"))
    }
    got = {
        (r._source_file, r._line_no) for r in ctx.lake.read("bronze/web_event_duplicates").collect()
    }
    assert got == truth
    n_ids = ctx.lake.read("bronze/web_events").select("event_id").distinct().count()
    assert n_ids == ctx.lake.read("bronze/web_events").count()


def test_chinese_text_survives_every_encoding(ingested):
    ctx, _ = ingested
    manifest = ctx.lake.read("meta/ingest_manifest").filter("source = 'pos'")
    encodings = {r.encoding for r in manifest.collect()}
    assert {"gb18030", "utf-8-sig", "utf-8"} <= encodings
    cats = {
        r.category
        for r in ctx.lake.read("bronze/pos_lines").select("category").distinct().collect()
    }
    assert cats <= CATEGORIES and len(cats) >= 4
    per_encoding = (
        ctx.lake.read("bronze/pos_lines")
        .join(manifest.select("_source_file", "encoding"), "_source_file")
        .groupBy("encoding")
        .agg(F.collect_set("category").alias("cats"))
        .collect()
    )
    for r in per_encoding:
        assert set(r.cats) <= CATEGORIES, (r.encoding, r.cats)


def test_rerun_changes_nothing(ingested):
    ctx, _ = ingested
    versions = {t: ctx.lake.version(t) for t in ctx.lake.tables()}
    again = {src: ingest(ctx, src) for src in SOURCE_NAMES}
    assert all(r["files"] == 0 for r in again.values())
    assert {t: ctx.lake.version(t) for t in ctx.lake.tables()} == versions
