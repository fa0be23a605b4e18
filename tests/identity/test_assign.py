"""assign.oldest: the smallest (date, node) per group, as min(struct(date, node)) would give."""

from __future__ import annotations

import datetime as dt

from jobs.identity.assign import oldest

D = dt.date


def test_oldest_takes_earliest_date_then_smallest_node_and_null_date_first(spark):
    rows = [
        ("c1", D(2026, 1, 5), "pos_card:B"),
        ("c1", D(2026, 1, 5), "crm:A"),  # same date: the smaller node wins
        ("c1", D(2026, 2, 1), "crm:0"),
        ("c2", D(2026, 3, 1), "web_user:x"),
        ("c2", None, "web_anon:z"),  # no date sorts before every date
        ("c3", D(2025, 12, 31), "crm:Q"),
    ]
    df = spark.createDataFrame(rows, "cluster_id string, first_seen date, node string")
    got = {
        r.cluster_id: (r.s, r.n) for r in oldest(df, ["cluster_id"], "first_seen", "node").collect()
    }
    assert got == {
        "c1": (D(2026, 1, 5), "crm:A"),
        "c2": (None, "web_anon:z"),
        "c3": (D(2025, 12, 31), "crm:Q"),
    }


def test_oldest_groups_by_several_keys(spark):
    rows = [
        ("c1", "m1", D(2026, 1, 2), "n2"),
        ("c1", "m1", D(2026, 1, 1), "n9"),
        ("c1", "m2", D(2026, 1, 3), "n1"),
    ]
    df = spark.createDataFrame(rows, "cluster_id string, prev_id string, s date, node string")
    got = sorted(tuple(r) for r in oldest(df, ["cluster_id", "prev_id"], "s", "node").collect())
    assert got == [("c1", "m1", D(2026, 1, 1), "n9"), ("c1", "m2", D(2026, 1, 3), "n1")]
