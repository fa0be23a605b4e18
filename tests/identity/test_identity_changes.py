"""jobs.identity.job.identity_changes: which identities seed a night's touched subgraph and
which only move their xref row's dates, against a plain Python reference."""

from __future__ import annotations

import datetime as dt

from jobs.identity.job import identity_changes

SCHEMA = "source string, key string, blocked boolean, first_seen date, last_seen date"
D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 1, 2), dt.date(2026, 1, 3)


def test_seeds_and_identities_seen_on_other_dates(spark):
    previous = [
        ("crm", "same", False, D1, D2),
        ("pos_phone", "seen_again", False, D1, D2),
        ("pos_phone", "unblocked", True, D1, D1),
        ("pos_card", "blocked_and_seen", False, D1, D1),
        ("web_anon", "gone", False, D1, D1),
        ("web_user", "first_seen_earlier", False, D2, D2),
    ]
    today = [
        ("crm", "same", False, D1, D2),
        ("pos_phone", "seen_again", False, D1, D3),
        ("pos_phone", "unblocked", False, D1, D1),
        ("pos_card", "blocked_and_seen", True, D1, D3),
        ("web_user", "first_seen_earlier", False, D1, D2),
        ("web_user", "new", False, D3, D3),
    ]
    seeds, moved = identity_changes(
        spark.createDataFrame(today, SCHEMA),
        spark.createDataFrame(previous, SCHEMA),
        lambda df, _name: df,
    )
    before = {(r[0], r[1]): r[2:] for r in previous}
    after = {(r[0], r[1]): r[2:] for r in today}
    expected_seeds = {
        k for k in before.keys() | after.keys()
        if k not in before or k not in after or before[k][0] != after[k][0]
    }  # fmt: skip
    expected_moved = {
        k for k in before.keys() & after.keys()
        if before[k][0] == after[k][0] and before[k] != after[k]
    }  # fmt: skip
    assert {(r.source, r.key) for r in seeds.collect()} == expected_seeds == {
        ("pos_phone", "unblocked"), ("pos_card", "blocked_and_seen"), ("web_anon", "gone"),
        ("web_user", "new"),
    }  # fmt: skip
    assert {(r.source, r.key) for r in moved.collect()} == expected_moved == {
        ("pos_phone", "seen_again"), ("web_user", "first_seen_earlier"),
    }  # fmt: skip
    # Each moved identity carries its dates as they are now (the xref row's new dates).
    assert {(r.source, r.key): (r.first_seen, r.last_seen) for r in moved.collect()} == {
        k: after[k][1:] for k in expected_moved
    }
