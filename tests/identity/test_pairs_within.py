"""The second pass's pairing by one read of its input (jobs/identity/corroborate.py
pairs_within) and the one-edit test with the distance computed once (fuzzy.py)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F


def test_pairs_within_pairs_every_group_once_and_skips_groups_over_the_cap(spark):
    from jobs.identity.corroborate import pairs_within

    d1, d2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    members = spark.createDataFrame(
        [("g1", "a", d1), ("g1", "c", d2), ("g1", "b", d1),  # three: three pairs
         ("g2", "d", d1),  # alone: none
         ("g3", "e", d1), ("g3", "f", d1), ("g3", "g", d1), ("g3", "h", d1)],  # over the cap
        "grp string, crm_id string, seen date",
    )  # fmt: skip
    got = pairs_within(members, ["grp"], max_size=3).select(
        "grp", F.col("a.crm_id").alias("x"), F.col("b.crm_id").alias("y"),
        F.greatest("a.seen", "b.seen").alias("seen"),
    )  # fmt: skip
    assert sorted(tuple(r) for r in got.collect()) == [
        ("g1", "a", "b", d1),
        ("g1", "a", "c", d2),
        ("g1", "b", "c", d2),
    ]
    uncapped = pairs_within(members, ["grp"]).filter(F.col("grp") == "g3")
    assert uncapped.count() == 6


def test_one_edit_with_the_distance_given_agrees_with_computing_it(spark):
    """compare passes the Levenshtein distance it computed once; the swap is looked for
    only in texts of equal length two edits apart."""
    from jobs.identity.fuzzy import _one_edit

    cases = [("13000079190", "13000791900"), ("abcd", "badc"), ("abc", "abc"),
             ("8478623", "8478632"), ("4562990", "4562890"), ("ab", "ba"), ("abc", "abcd"),
             ("abc", None), (None, None), ("aab", "aba")]  # fmt: skip
    df = spark.createDataFrame(cases, "a string, b string")
    a, b = F.col("a"), F.col("b")
    got = df.select(
        "a", "b",
        _one_edit(a, b).alias("own"),
        _one_edit(a, b, F.levenshtein(a, b)).alias("given"),
    ).collect()  # fmt: skip
    assert [(r.a, r.b) for r in got if r.own != r.given] == []
    assert {(r.a, r.b) for r in got if r.given} == {
        ("8478623", "8478632"), ("4562990", "4562890"), ("ab", "ba"), ("abc", "abcd"),
        ("aab", "aba"),
    }  # fmt: skip


def test_pairs_with_touched_are_the_block_pairs_with_a_touched_end(spark):
    """The night's candidate pairs from the touched records' blocks only: the same pairs
    as every pair of the blocks (pairs_within, under the cap) filtered to a touched end,
    computed independently here in Python."""
    import itertools

    from jobs.identity.second import pairs_with_touched

    blocks = {
        "b1": ["a", "b", "c", "d"],  # a touched: a-b, a-c, a-d (not b-c, b-d, c-d)
        "b2": ["a", "b"],  # a-b again (one pair)
        "b3": ["c", "e"],  # no touched end: none
        "b4": ["a", "e", "f", "g", "h", "i"],  # over the cap: none
        "b5": ["e", "f", "j"],  # two touched: e-f, e-j, f-j
        "b6": ["j"],  # alone
    }
    touched = {"a", "j", "f"}
    cap = 4
    rows = [(crm_id, block) for block, ids in blocks.items() for crm_id in ids]
    members = spark.createDataFrame(rows, "crm_id string, block string")
    got = pairs_with_touched(
        members, spark.createDataFrame([(t,) for t in touched], "crm_id string"), cap
    )
    want = {
        (min(x, y), max(x, y))
        for ids in blocks.values()
        if len(ids) <= cap
        for x, y in itertools.combinations(ids, 2)
        if x in touched or y in touched
    }
    assert {tuple(r) for r in got.collect()} == want
    assert want == {("a", "b"), ("a", "c"), ("a", "d"), ("e", "f"), ("e", "j"), ("f", "j")}
