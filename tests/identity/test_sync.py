"""sync.row_changes and Lake.apply_changes: only new, changed and vanished rows are written,
an unchanged row keeps its as_of_date, and no change means no commit."""

from __future__ import annotations

import datetime as dt

from jobs.identity.sync import row_changes
from jobs.lake import Lake
from jobs.schemas import table_schema

D1, D2 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
PII = "restricted/member_pii"


def pii_rows(spark, rows: list[tuple], stamp: dt.date | None = None):
    """member_pii rows (member_id, name); the other columns null."""
    cols = table_schema(PII).columns
    data = [
        tuple({"member_id": m, "name": n, "as_of_date": stamp}.get(c) for c in cols)
        for m, n in rows
    ]
    return spark.createDataFrame(data, table_schema(PII).struct)


def test_only_changed_rows_are_written_and_unchanged_rows_keep_their_date(spark, tmp_path):
    lake = Lake(spark, tmp_path / "lake")
    lake.overwrite(pii_rows(spark, [("M1", "a"), ("M2", "b"), ("M3", "c")], D1), PII)
    new = pii_rows(spark, [("M1", "a"), ("M2", "B"), ("M4", "d")]).drop("as_of_date")
    # M3 is outside the recomputed scope: kept although absent from ``new``.
    scope = spark.createDataFrame([("M1",), ("M2",), ("M4",)], "member_id string")
    changes = row_changes(new, lake.read(PII), PII, D2, scope)
    got = {(r.member_id, r._op) for r in changes.collect()}
    assert got == {("M2", "upsert"), ("M4", "upsert")}
    lake.apply_changes(changes, PII)
    rows = {r.member_id: (r.name, r.as_of_date) for r in lake.read(PII).collect()}
    assert rows == {"M1": ("a", D1), "M2": ("B", D2), "M3": ("c", D1), "M4": ("d", D2)}

    # Without a scope a row missing from ``new`` is deleted.
    everyone = pii_rows(spark, [("M1", "a"), ("M2", "B"), ("M4", "d")]).drop("as_of_date")
    changes = row_changes(everyone, lake.read(PII), PII, D2)
    assert [(r.member_id, r._op) for r in changes.collect()] == [("M3", "delete")]
    lake.apply_changes(changes, PII)
    assert sorted(r.member_id for r in lake.read(PII).collect()) == ["M1", "M2", "M4"]

    # Nothing changed: nothing to write.
    assert row_changes(everyone, lake.read(PII), PII, D2).count() == 0
