"""kpis.xref_kpis: the identity and CRM figures of gold/kpi_daily from one grouping of
the xref, with exact copies counted once unless the xref is as the identity step left it."""

from __future__ import annotations

import datetime as dt

from jobs.gold.kpis import xref_kpis

D = dt.date(2026, 11, 20)
SCHEMA = "source string, source_key string, member_id string, first_seen date"
ROWS = [
    ("crm", "C1", "M1", D),
    ("crm", "C2", "M1", D),  # M1: two CRM records (a duplicate registration)
    ("pos_card", "K1", "M1", D),
    ("web_user", "U1", "M1", D),
    ("crm", "C3", "M2", D),  # M2: one identity only
    ("web_anon", "A1", "M3", D),  # M3: behaviour, but not a member of D's features
    ("web_anon", "A2", None, D),  # an anonymous device
    ("crm", "C4", "M4", D + dt.timedelta(days=1)),  # first seen after D: left out
]


def _figures(spark, rows: list[tuple], unique: bool) -> dict:
    xref = spark.createDataFrame(rows, SCHEMA)
    features = spark.createDataFrame([("M1",), ("M2",), ("M4",)], "member_id string")
    return xref_kpis(xref, features, D, unique).first().asDict()


def test_xref_figures_by_hand(spark):
    want = {
        "source_identities": 7,
        "source_identities_shared": 4,  # M1's four
        "crm_records": 3,
        "crm_records_duplicated": 2,
        "members_with_behaviour": 1,  # M1 (M3 is not among D's members)
    }
    assert _figures(spark, ROWS, unique=True) == want
    # An exact copy of a row (another writer's) counts once when copies are looked for.
    assert _figures(spark, [*ROWS, ROWS[0], ROWS[3]], unique=False) == want
