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


EDGES = "silver/identity_edges"


def _edge(i: int, rule: str, seen: int) -> tuple:
    return ("crm", f"c{i}", "phone", f"p{i % 7}", rule, "high", D1, D1 + dt.timedelta(seen))


def test_row_changes_match_a_python_reference(spark):
    """Random edges before and after a night: upserts are exactly the new rows not
    already there, deletes exactly the keys that vanished (identity_edges has no stamp;
    the member_pii test above checks the stamp)."""
    import random

    rng = random.Random(7)
    schema = table_schema(EDGES)
    cols = [c for c in schema.columns if c != "as_of_date"]
    current = {_edge(i, rng.choice(["crm_phone", "crm_card"]), rng.randrange(3)) for i in range(60)}
    new = set()
    for row in current:
        roll = rng.random()
        if roll < 0.6:
            new.add(row)  # unchanged
        elif roll < 0.8:
            new.add((*row[:7], row[7] + dt.timedelta(1)))  # last_seen moved
        # else: removed
    new |= {_edge(i, "name_dob_city", 0) for i in range(50, 70)}  # added (some ends reused)
    to_df = lambda rows: spark.createDataFrame(sorted(rows), ", ".join(  # noqa: E731
        f"{c} {'date' if c.endswith('seen') else 'string'}" for c in cols))  # fmt: skip
    got = row_changes(to_df(new), to_df(current), EDGES, D2)
    keys = lambda rows: {r[:5] for r in rows}  # noqa: E731
    expected = {("upsert", *r) for r in new - current} | {
        ("delete", *k, None, None, None) for k in keys(current) - keys(new)
    }
    assert {(r._op, *(r[c] for c in cols)) for r in got.collect()} == expected
    assert got.columns == [*schema.columns, "_op"]
