"""jobs.identity.setops: symmetric_difference against Spark's own EXCEPT, both ways;
sided_difference against a plain Python reference."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

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


def test_nulls_in_different_columns_and_repeated_rows_stay_apart(spark):
    """The digests hash each column with its null flag: ("a", null) is not (null, "a"),
    and a row repeated on one side comes out once."""
    schema = "x string, y string"
    a = spark.createDataFrame([("a", None), ("a", None), (None, None), ("", None)], schema)
    b = spark.createDataFrame([(None, "a"), (None, None), (None, "")], schema)
    got = _rows(sided_difference(a, b))
    assert got == sorted(
        [("a", None, True), ("", None, True), (None, "a", False), (None, "", False)], key=repr
    )
    assert _rows(symmetric_difference(a, b)) == _rows(a.subtract(b).unionByName(b.subtract(a)))


def test_every_column_type_the_tables_hold(spark):
    """Dates, timestamps, decimals, doubles, booleans and arrays are compared by value."""
    schema = "d date, t timestamp, m decimal(12,2), f double, b boolean, tags array<string>, n int"
    row = (dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, 3, 4, 5), Decimal("1.50"), 0.25,
           True, ["x", "y"], 1)  # fmt: skip
    others = [
        (dt.date(2026, 1, 3), *row[1:]),
        (row[0], dt.datetime(2026, 1, 2, 3, 4, 6), *row[2:]),
        (*row[:2], Decimal("1.51"), *row[3:]),
        (*row[:3], 0.5, *row[4:]),
        (*row[:4], False, *row[5:]),
        (*row[:5], ["y", "x"], row[6]),
        (*row[:6], None),
    ]
    a = spark.createDataFrame([row, *others], schema)
    b = spark.createDataFrame([row], schema)
    got = sided_difference(a, b).collect()
    assert len(got) == len(others) and all(r[NEW] for r in got)
    assert symmetric_difference(b, b).count() == 0
