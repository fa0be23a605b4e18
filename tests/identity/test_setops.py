"""jobs.identity.setops: symmetric_difference against Spark's own EXCEPT, both ways;
sided_difference against a plain Python reference."""

from __future__ import annotations

from jobs.identity.setops import NEW, added_or_removed, sided_difference, symmetric_difference

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


KEYED = "k1 string, k2 long, v string, n long"


def test_sided_difference_and_the_keys_added_or_removed(spark):
    new = [
        ("a", 1, "same", 1),  # unchanged
        ("a", 2, "changed", 2),
        ("b", 1, None, None),  # added (nulls in values)
        ("c", 3, "x", 3),  # unchanged
        ("d", 4, None, 5),  # changed from a non-null to a null value
    ]
    current = [
        ("a", 1, "same", 1),
        ("a", 2, "before", 2),
        ("c", 3, "x", 3),
        ("d", 4, "y", 5),
        ("e", 9, "gone", 9),  # removed
    ]
    got = sided_difference(spark.createDataFrame(new, KEYED), spark.createDataFrame(current, KEYED))
    assert got.columns == ["k1", "k2", "v", "n", NEW]
    expected = {(*r, True) for r in new if r not in current} | {
        (*r, False) for r in current if r not in new
    }
    assert {tuple(r) for r in got.collect()} == expected
    changed_keys = added_or_removed(got, ["k1", "k2"])
    assert {(r.k1, r.k2, r[NEW]) for r in changed_keys.collect()} == {
        ("b", 1, True),
        ("e", 9, False),
    }
