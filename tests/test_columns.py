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
