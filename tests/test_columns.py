"""jobs.columns: shared column expressions, against Python references."""

from __future__ import annotations

import random

from pyspark.sql import functions as F

from jobs.columns import any_true, sorted_distinct


def test_sorted_distinct_is_the_sorted_set_of_non_null_values(spark):
    rng = random.Random(5)
    rows = [
        (f"g{rng.randrange(40)}", rng.choice([None, "b", "a", "c", "食品", "A", ""]))
        for _ in range(2_000)
    ]
    rows.append(("only_null", None))
    df = spark.createDataFrame(rows, "g string, v string")
    got = {
        r["g"]: r["vs"] for r in df.groupBy("g").agg(sorted_distinct("v").alias("vs")).collect()
    }
    want: dict[str, set[str]] = {}
    for group, value in rows:
        want.setdefault(group, set())
        if value is not None:
            want[group].add(value)
    assert got == {group: sorted(values) for group, values in want.items()}
    assert got["only_null"] == []


def test_sorted_distinct_equals_sorted_collect_set(spark):
    df = spark.createDataFrame(
        [(1, "x"), (1, "x"), (1, None), (1, "a"), (2, None), (3, "z")], "k int, v string"
    )
    both = df.groupBy("k").agg(
        sorted_distinct("v").alias("ours"), F.array_sort(F.collect_set("v")).alias("theirs")
    )
    assert all(r["ours"] == r["theirs"] for r in both.collect())


def test_any_true_is_max_over_a_boolean(spark):
    rows = [("a", True), ("a", False), ("b", False), ("b", None), ("c", None), ("d", True)]
    df = spark.createDataFrame(rows, "g string, b boolean")
    got = {
        r.g: (r.any, r.mx)
        for r in df.groupBy("g").agg(any_true(F.col("b")).alias("any"), F.max("b").alias("mx")).collect()
    }
    assert got == {"a": (True, True), "b": (False, False), "c": (None, None), "d": (True, True)}


def test_let_gives_the_body_of_the_value(spark):
    """``let(value, body)`` equals ``body`` written with ``value`` in each place, for
    arrays, nulls and empty arrays (the median of sorted gaps is built this way)."""
    from jobs.columns import let

    df = spark.createDataFrame(
        [(1, [3, 1, 2]), (2, None), (3, []), (4, [5])], "k int, a array<int>"
    )

    def body(a):
        return F.when(F.size(a) > 0, F.element_at(F.array_sort(a), 1) * 10 + F.element_at(a, 1))

    got = df.select("k", let(F.col("a"), body).alias("once"), body(F.col("a")).alias("inline"))
    rows = {r.k: (r.once, r.inline) for r in got.collect()}
    assert rows == {1: (13, 13), 2: (None, None), 3: (None, None), 4: (55, 55)}
