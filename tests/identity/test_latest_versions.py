"""Each CRM record's latest version (jobs.identity.graph.latest_crm_versions): records with
one version are flagged without ranking, the others ranked; checked against a Python
reference of the same order (updated_ts, then the later delivery)."""

from __future__ import annotations

import datetime as dt
import random

from jobs.identity.graph import latest_crm_versions

COLUMNS = "crm_id string, updated_ts timestamp, _business_date date, _ingested_at timestamp, _source_file string, _line_no long"


def _reference(rows: list[tuple]) -> set[tuple[str, int]]:
    """(source file, line) of each record's latest version: the greatest of (updated_ts,
    business date, ingested at, file, line) with nulls lowest, key trimmed, blank keys out."""
    best: dict[str, tuple] = {}
    for crm_id, updated, day, ingested, source, line in rows:
        key = (crm_id or "").strip()
        if not key:
            continue
        rank = tuple((v is not None, v) for v in (updated, day, ingested, source, line))
        if key not in best or rank > best[key][0]:
            best[key] = (rank, (source, line))
    return {v[1] for v in best.values()}


def test_latest_version_of_each_record_matches_a_reference(spark):
    rng = random.Random(7)
    t0 = dt.datetime(2026, 11, 1, 9)
    rows = []
    for i in range(300):
        for v in range(rng.choice([1, 1, 1, 2, 3])):  # most records have one version
            same = rng.random() < 0.3  # ties on updated_ts, broken by the delivery
            updated = None if rng.random() < 0.1 else t0 + dt.timedelta(hours=0 if same else v)
            day = dt.date(2026, 11, 1) + dt.timedelta(days=rng.randint(0, 2))
            ingested = t0 + dt.timedelta(days=rng.randint(0, 2))
            crm_id = f" C{i} " if v == 1 else f"C{i}"  # trimmed to one key
            rows.append(
                (crm_id, updated, day, ingested, f"crm/{day}/f{rng.randint(0, 1)}.csv", len(rows))
            )
    rows += [
        ("  ", t0, dt.date(2026, 11, 1), t0, "crm/x.csv", 9001),
        (None, t0, dt.date(2026, 11, 1), t0, "crm/x.csv", 9002),
    ]
    flagged = latest_crm_versions(spark.createDataFrame(rows, COLUMNS)).collect()
    assert len(flagged) == len(rows) - 2  # blank and null ids dropped, every version kept
    latest = {(r["_source_file"], r["_line_no"]) for r in flagged if r["is_latest"]}
    assert latest == _reference(rows)
    assert len(latest) == 300  # one per record
    assert {r["crm_key"] for r in flagged} == {f"C{i}" for i in range(300)}
