"""The loyalty points ledger (CONTRACT 1.4): ingest to bronze/quarantine, silver/points_ledger.

One small lake for the module: hand-written ledger files of three days (GB18030 with
CRLF, UTF-8 with BOM, a day that arrives late), a re-sent file, and the silver step
over an identity xref written by hand.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.ingest.job import ingest
from jobs.schemas import table_schema
from jobs.silver import points_ledger
from tests.ingest.landing_fixtures import day_dir

D0, D1, D2 = "2026-10-31", "2026-11-01", "2026-11-02"
HEADER = "txn_id,crm_id,member_card_no,txn_ts,txn_type,points,order_id,store_id,reason,expire_date"
DAY1 = [
    "T1,C1,,2026-11-01 10:00:00,EARN,100,O1,S01,purchase,2027-11-30",  # line 2
    "T2,,vip1 ,2026-11-01 11:00:00,REDEEM,50,,S01,gift:保温杯,",  # card only, lower case
    "T3,,,2026-11-01 11:00:00,EARN,10,,,review,",  # member_missing
    "T4,C1,,2026-11-01 12:00:00,EARN,0,,,review,",  # points_invalid
    "T5,C1,,2026-11-01 12:00:00,ADJUST,0,,,correction,",  # points_invalid
    "T6,C1,,2026-11-01 12:00:00,BONUS,5,,,x,",  # txn_type_invalid
    "T7,C1,,2026-11-01 12:00:00,ADJUST,-30,,,correction,",
    "T8,C1,,2026-11-01 13:00:00,EARN,20,,,review,2027-02-30",  # kept, expire_date nulled
    "T9,C9,,2026-11-01 13:00:00,EARN,7,,,review,",  # nobody knows C9: kept, no member
    "T1,C1,,2026-11-01 10:00:00,EARN,999,O1,S01,purchase,2027-11-30",  # conflict
    ",C1,,2026-11-01 14:00:00,EARN,1,,,review,",  # line 12: txn_id_required
]
DAY2 = [
    "T1,C1,,2026-11-01 10:00:00,EARN, 100 ,O1,S01,purchase,2027-11-30",  # identical re-delivery
    "T10,C2,,2026-11-02 09:00:00,EARN,5,,,review,",
    "T2,,VIP1,2026-11-01 11:00:00,REDEEM,60,,S01,gift:保温杯,",  # conflict with day 1
]
LATE = ["T0,C2,VIP2,2026-10-31 20:00:00,EARN,40,,,birthday_bonus,2027-10-31"]


def write_ledger(landing, day: str, lines: list[str], encoding: str = "utf-8", eol: str = "\n"):
    path = day_dir(landing, "loyalty", day) / f"points_{day.replace('-', '')}.csv"
    path.write_bytes((eol.join([HEADER, *lines]) + eol).encode(encoding))
    return path


@pytest.fixture(scope="module")
def ledger_lake(spark, tmp_path_factory):
    """Days 1 and 2 taken in, then a late day 0 and a re-sent day 1 (T9 dropped)."""
    from jobs.config import load_settings, with_paths
    from jobs.context import RunContext

    base = tmp_path_factory.mktemp("loyalty")
    settings = with_paths(
        load_settings(env={}), landing=base / "landing", lake=base / "lake",
        exports=base / "exports", work=base / "work",
    )  # fmt: skip
    key = base / "work" / "pii.key"
    key.parent.mkdir(parents=True)
    key.write_text("ab" * 32)
    settings = settings.model_copy(
        update={"privacy": settings.privacy.model_copy(update={"key_file": key})}
    )
    landing = settings.paths.landing

    def ctx(day: str) -> RunContext:
        return RunContext(settings=settings, spark=spark, as_of=dt.date.fromisoformat(day))

    write_ledger(landing, D1, DAY1, "gb18030", "\r\n")
    write_ledger(landing, D2, DAY2, "utf-8-sig")
    first = ingest(ctx(D2), "loyalty")
    write_ledger(landing, D0, LATE)
    write_ledger(landing, D1, [line for line in DAY1 if not line.startswith("T9,")], "gb18030")
    again = ingest(ctx(D2), "loyalty")
    return ctx, first, again


def test_ledger_rows_go_to_bronze_quarantine_or_duplicates_with_reasons(ledger_lake):
    ctx, first, again = ledger_lake
    assert first["files"] == 2 and first["rows_in"] == 14
    assert (first["rows_out"], first["quarantined"], first["duplicates"]) == (6, 7, 1)
    lake = ctx(D2).lake
    bronze = {r.txn_id: r for r in lake.read("bronze/loyalty_ledger").collect()}
    # Late day 0 taken in; re-sent day 1 replaced its rows (T9 gone), nothing doubled.
    assert sorted(bronze) == ["T0", "T1", "T10", "T2", "T7", "T8"]
    assert again["files"] == 2 and again["rows_in"] == 11
    t1, t2, t7, t8 = bronze["T1"], bronze["T2"], bronze["T7"], bronze["T8"]
    assert (t1.points, t1.txn_date, t1.expire_date) == (
        100,
        dt.date(2026, 11, 1),
        dt.date(2027, 11, 30),
    )
    assert t1._source_file == f"loyalty/{D1}/points_20261101.csv"  # the first delivery stays
    assert t2.reason == "gift:保温杯" and t2.crm_id is None and t7.points == -30
    assert t8.expire_date is None and [(i.field, i.rule) for i in t8._field_issues] == [
        ("expire_date", "expire_date_invalid")
    ]
    quarantine = {
        (r._source_file[-12:-4], r._line_no): sorted(r._reasons)
        for r in lake.read("quarantine/loyalty").collect()
    }
    assert quarantine == {
        ("20261101", 4): ["member_missing"],
        ("20261101", 5): ["points_invalid"],
        ("20261101", 6): ["points_invalid"],
        ("20261101", 7): ["txn_type_invalid"],
        ("20261101", 10): ["txn_id_conflict"],  # T9 dropped: the conflict moved up a line
        ("20261101", 11): ["txn_id_required"],
        ("20261102", 4): ["txn_id_conflict"],
    }
    dups = lake.read("bronze/loyalty_duplicates").collect()
    assert [(r.txn_id, r._line_no, r.first_source_file[-12:-4]) for r in dups] == [
        ("T1", 2, "20261101")
    ]
    # Row conservation, file by file: every row is in bronze, quarantine or duplicates.
    manifest = lake.read("meta/ingest_manifest").filter(F.col("source") == "loyalty").collect()
    assert {r.encoding for r in manifest} == {"gb18030", "utf-8-sig", "utf-8"}
    for r in manifest:
        assert r.rows_total == r.rows_good + r.rows_bad + r.rows_duplicate, r._source_file


def test_points_ledger_finds_members_by_crm_id_then_card_and_keeps_the_unknown(ledger_lake):
    ctx, _, _ = ledger_lake
    c = ctx(D2)
    xref = [("crm", "C1", "M1"), ("pos_card", "VIP1", "M1"), ("crm", "C2", "M2"),
            ("pos_card", "VIP2", "M3")]  # fmt: skip
    schema = table_schema("silver/member_xref").struct
    rows = [tuple({"source": s, "source_key": k, "member_id": m}.get(f.name) for f in schema.fields)
            for s, k, m in xref]  # fmt: skip
    c.lake.overwrite(c.spark.createDataFrame(rows, schema), "silver/member_xref")
    write_ledger(
        c.settings.paths.landing, D2, [*DAY2, "T11,C7,,2026-11-02 10:00:00,EARN,3,,,review,"]
    )
    ingest(c, "loyalty")  # re-sent day 2 with a transaction of a member no export knows

    figures = points_ledger.run(c)

    got = {
        r.txn_id: (r.member_id, r.matched_by, r.signed_points, r.txn_type)
        for r in c.lake.read("silver/points_ledger").collect()
    }
    assert got == {
        "T0": ("M2", "crm", 40, "EARN"),  # crm_id wins over the card (VIP2 is M3's)
        "T1": ("M1", "crm", 100, "EARN"),
        "T2": ("M1", "pos_card", -50, "REDEEM"),  # card only, matched upper-cased
        "T7": ("M1", "crm", -30, "ADJUST"),
        "T8": ("M1", "crm", 20, "EARN"),
        "T10": ("M2", "crm", 5, "EARN"),
        "T11": (None, None, 3, "EARN"),  # kept and counted, never dropped
    }
    assert figures["rows_in"] == figures["rows_out"] == 7
    assert figures["unmatched"] == 1 and figures["members_negative_balance"] == 0
    as_of_day1 = points_ledger.points_ledger(
        c.lake.read("bronze/loyalty_ledger"),
        c.lake.read("silver/member_xref"),
        dt.date(2026, 11, 1),
    )
    assert as_of_day1.count() == 5  # a backfill as of day 1 leaves day 2's rows out
