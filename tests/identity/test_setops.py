"""jobs.identity.setops.symmetric_difference against Spark's own EXCEPT, both ways."""

from __future__ import annotations

from jobs.identity.setops import symmetric_difference

SCHEMA = "src long, dst long, rule string"


def _rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def test_rows_in_exactly_one_side_once_each_with_nulls_equal(spark):
    a = spark.createDataFrame(
        [(1, 2, "phone"), (1, 2, "phone"), (3, 4, None), (5, 6, "card"), (7, None, "x")],
        SCHEMA,
    )
    b = spark.createDataFrame(
        [(3, 4, None), (5, 6, "email"), (8, 9, "card"), (8, 9, "card")], SCHEMA
    )
    got = _rows(symmetric_difference(a, b))
    reference = _rows(a.subtract(b).unionByName(b.subtract(a)))
    assert got == reference
    assert got == sorted(
        [(1, 2, "phone"), (5, 6, "card"), (7, None, "x"), (5, 6, "email"), (8, 9, "card")],
        key=repr,
    )
    assert symmetric_difference(a, a).count() == 0
    assert symmetric_difference(a, b).columns == ["src", "dst", "rule"]
