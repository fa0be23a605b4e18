"""Ingestion on real Delta tables from small hand-written landing files."""

from __future__ import annotations

import gzip
import os

import pytest
from pyspark.sql import functions as F

from jobs.ingest import job as ingest_job
from jobs.ingest.job import existing_with_keys, ingest
from jobs.ingest.landing import LandingNotReady
from tests.ingest.landing_fixtures import event, sale, write_crm, write_pos, write_web

D1, D2, D3 = "2026-11-01", "2026-11-02", "2026-11-03"


def _rows(spark_df, *cols):
    return sorted(tuple(r) for r in spark_df.select(*cols).collect())


def test_pos_good_and_bad_rows_with_reasons(make_ctx, settings):
    landing = settings.paths.landing
    write_pos(
        landing,
        D1,
        "S01",
        [
            sale("O1", 1, "2026-11-01 10:00:00"),
            sale("O1", 2, "2026-11-01 10:00:00", qty=1, price="5.50", discount=""),
            "O2,1,S01,2026-13-45 25:61:00,SALE,,C002,,SKU1,生鲜,0,10.00,0,0.00,bitcoin,,",  # bad ts, qty, payment, mismatch? (0*10-0=0 ok)
            "O3,1,S01,2026-11-01 11:00:00,SALE,,,,SKU1,生鲜,1,abc,0,10.00,cash,,",  # non-numeric price
            "O4,1,S01,2026-11-01 11:00:00,RETURN,,,,SKU1,生鲜,1,10.00,0,10.00,cash,,",  # return without ref
            "O5,1,S01,2026-11-01 11:00:00,SALE",  # short row
            "O6,1,S01,2026-11-01 12:00:00,SALE,,,,SKU1,生鲜,2,10.00,0,19.00,card,,",  # amount mismatch
        ],
    )
    result = ingest(make_ctx(D1), "pos")
    assert result["rows_in"] == 7 and result["quarantined"] == 5
    lake = make_ctx(D1).lake
    bronze = lake.read("bronze/pos_lines")
    assert _rows(bronze, "order_id", "line_no") == [("O1", 1), ("O1", 2)]
    line2 = bronze.filter("line_no = 2").first()
    assert str(line2.discount) == "0.00" and str(line2.amount) == "5.50"
    assert line2.category == "生鲜" and line2._line_no == 3 and str(line2.order_date) == D1
    q = {r._line_no: sorted(r._reasons) for r in lake.read("quarantine/pos").collect()}
    assert q[4] == ["order_ts_invalid", "payment_method_invalid", "qty_invalid"]
    assert q[5] == ["unit_price_invalid"]
    assert q[6] == ["ref_order_id_invalid"]
    assert q[7] == ["wrong_field_count"]
    assert q[8] == ["amount_mismatch"]
    raw = lake.read("quarantine/pos").filter("_line_no = 7").first()._raw
    assert raw == "O5,1,S01,2026-11-01 11:00:00,SALE"


def test_gb18030_and_bom_keep_chinese_text(make_ctx, settings):
    landing = settings.paths.landing
    write_pos(
        landing,
        D1,
        "S01",
        [sale("G1", 1, "2026-11-01 10:00:00", category="美妆")],
        encoding="gb18030",
    )
    write_pos(
        landing,
        D1,
        "S02",
        [sale("B1", 1, "2026-11-01 10:00:00", category="母婴")],
        encoding="utf-8-sig",
    )
    ingest(make_ctx(D1), "pos")
    lake = make_ctx(D1).lake
    assert _rows(lake.read("bronze/pos_lines"), "order_id", "category") == [
        ("B1", "母婴"),
        ("G1", "美妆"),
    ]
    enc = dict(_rows(lake.read("meta/ingest_manifest"), "_source_file", "encoding"))
    assert set(enc.values()) == {"gb18030", "utf-8-sig"}


def test_resent_file_replaces_and_rerun_changes_nothing(make_ctx, settings):
    landing = settings.paths.landing
    p = write_pos(
        landing,
        D1,
        "S01",
        [sale("O1", 1, "2026-11-01 10:00:00"), sale("O1", 2, "2026-11-01 10:00:00")],
    )
    ingest(make_ctx(D1), "pos")
    lake = make_ctx(D1).lake
    v1 = lake.version("bronze/pos_lines")
    again = ingest(make_ctx(D1), "pos")
    assert again["files"] == 0 and lake.version("bronze/pos_lines") == v1
    # Same name, new content: one line corrected, one removed, one added.
    write_pos(
        landing,
        D1,
        "S01",
        [sale("O1", 1, "2026-11-01 10:00:00", qty=3), sale("O9", 1, "2026-11-01 18:00:00")],
    )
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    res = ingest(make_ctx(D1), "pos")
    assert res["files"] == 1
    assert _rows(lake.read("bronze/pos_lines"), "order_id", "line_no", "qty") == [
        ("O1", 1, 3),
        ("O9", 1, 2),
    ]
    assert lake.read("meta/ingest_manifest").count() == 1


def test_not_ready_refuses_unless_allowed_and_late_day_taken_in(make_ctx, settings):
    landing = settings.paths.landing
    write_pos(landing, D1, "S01", [sale("O1", 1, "2026-11-01 10:00:00")])
    write_pos(landing, D2, "S01", [sale("O2", 1, "2026-11-02 10:00:00")], success=False)
    with pytest.raises(LandingNotReady, match="no _SUCCESS"):
        ingest(make_ctx(D2), "pos")
    write_pos(landing, D3, "S01", [sale("O3", 1, "2026-11-03 10:00:00")])
    res = ingest(make_ctx(D3), "pos")  # D2 still incomplete: skipped, reported as waiting
    assert res["waiting"] and res["waiting"][0].endswith(D2)
    lake = make_ctx(D3).lake
    assert _rows(lake.read("bronze/pos_lines"), "order_id") == [("O1",), ("O3",)]
    (landing / "pos" / D2 / "_SUCCESS").write_text("")  # the late day arrives
    ingest(make_ctx(D3), "pos")
    assert _rows(lake.read("bronze/pos_lines"), "order_id") == [("O1",), ("O2",), ("O3",)]


def test_web_dedup_broken_json_and_corrupt_gzip(make_ctx, settings):
    landing = settings.paths.landing
    write_web(
        landing,
        D1,
        "001",
        [
            event("E1", "2026-11-01T10:00:00+08:00"),
            event("E2", "2026-11-01T11:00:00+08:00", "login", user="U1"),
            event("E1", "2026-11-01T10:00:00+08:00"),  # redelivered in the same file
            '{"event_id": "E3", "event_ts": "2026-11-01T1',  # truncated
            "[1, 2]",
            event("E4", "2026-11-01T12:00:00+08:00", "purchase", order_id="W1", revenue="abc"),
        ],
    )
    write_web(
        landing,
        D1,
        "002",
        [event("E5", "2026-11-01T23:30:00+08:00", "purchase", order_id="W2", revenue=99.5)],
        gz=True,
    )
    d = landing / "web" / D1
    payload = "".join(
        f'{{"event_id": "X{i}", "anonymous_id": "{i * 7919 % 10007}"}}\n' for i in range(2000)
    )
    blob = gzip.compress(payload.encode())
    (d / "events_20261101_003.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    ingest(make_ctx(D1), "web")
    write_web(
        landing,
        D2,
        "001",
        [
            event("E2", "2026-11-01T11:00:00+08:00", "login", user="U1"),
            event("E6", "2026-11-02T00:10:00+08:00"),
        ],
    )
    ingest(make_ctx(D2), "web")
    lake = make_ctx(D2).lake
    events = lake.read("bronze/web_events")
    assert _rows(events, "event_id") == [("E1",), ("E2",), ("E5",), ("E6",)]
    e5 = events.filter("event_id = 'E5'").first()
    assert str(e5.revenue) == "99.50" and str(e5.event_date) == D1
    dups = _rows(lake.read("bronze/web_event_duplicates"), "event_id", "_source_file")
    assert dups == [
        ("E1", "web/2026-11-01/events_20261101_001.jsonl"),
        ("E2", "web/2026-11-02/events_20261102_001.jsonl"),
    ]
    q = {
        (r._source_file.rsplit("/", 1)[1], r._line_no): sorted(r._reasons)
        for r in lake.read("quarantine/web").collect()
    }
    assert q[("events_20261101_001.jsonl", 4)] == ["invalid_json"]
    assert q[("events_20261101_001.jsonl", 5)] == ["not_an_object"]
    assert q[("events_20261101_001.jsonl", 6)] == ["revenue_invalid"]
    assert q[("events_20261101_003.jsonl.gz", None)] == ["file_unreadable"]
    m = {r._source_file.rsplit("/", 1)[1]: r for r in lake.read("meta/ingest_manifest").collect()}
    assert m["events_20261101_003.jsonl.gz"].status == "unreadable"
    f1 = m["events_20261101_001.jsonl"]
    assert (f1.rows_total, f1.rows_good, f1.rows_bad, f1.rows_duplicate) == (6, 2, 3, 1)


def test_crm_versions_kept_and_typed(make_ctx, settings):
    landing = settings.paths.landing
    write_crm(
        landing,
        D1,
        [
            "M1,C001,+86 138 0013 8000, Zhang@QQ.com ,,U1,张三,男,19900307,广东,深圳,2024-01-01 10:00:00,store,S01,Y,false,,active,2024-01-01 10:00:00",
            "M2,,,,,,李四,X,1990-02-30,,,2024-01-01 10:00:00,store,,maybe,,,active,2024-01-01 10:00:00",
        ],
    )
    write_crm(
        landing,
        D2,
        [
            "M1,C001,13900139000,zhang@qq.com,,U1,张三,M,1990-03-07,广东,深圳,2024-01-01 10:00:00,store,S01,N,1,0,active,2026-11-02 09:00:00",
        ],
    )
    ingest(make_ctx(D2), "crm")
    lake = make_ctx(D2).lake
    bronze = lake.read("bronze/crm_members")
    rows = bronze.filter("crm_id = 'M1'").orderBy("updated_ts").collect()
    assert [r.crm_id for r in rows] == ["M1", "M1"]
    assert rows[0].gender == "M" and str(rows[0].birth_date) == "1990-03-07"
    assert (rows[0].opt_in_sms, rows[0].opt_in_email, rows[0].opt_in_push) == (True, False, False)
    assert (rows[1].opt_in_sms, rows[1].opt_in_email, rows[1].opt_in_push) == (False, True, False)
    assert rows[0].phone == "+86 138 0013 8000"  # as received; normalised by identity resolution
    assert rows[0]._field_issues == [] and rows[1]._field_issues == []
    # M2's gender, birth date and SMS opt-in are invalid optional fields: the row is
    # kept with them empty (no consent) and the issues recorded (CONTRACT 1).
    (m2,) = bronze.filter("crm_id = 'M2'").collect()
    assert (m2.name, m2.gender, m2.birth_date, m2.opt_in_sms) == ("李四", None, None, False)
    assert sorted((i.field, i.rule, i.value) for i in m2._field_issues) == [
        ("birth_date", "birth_date_invalid", "1990-02-30"),
        ("gender", "gender_invalid", "X"),
        ("opt_in_sms", "opt_in_invalid", "maybe"),
    ]
    assert lake.read("quarantine/crm").count() == 0


def test_missing_required_column_quarantines_every_row(make_ctx, settings):
    landing = settings.paths.landing
    d = landing / "pos" / D1
    d.mkdir(parents=True)
    (d / "_SUCCESS").write_text("")
    (d / "pos_S09_20261101.csv").write_text(
        "order_id,line_no,store_id\nO1,1,S09\nO2,1,S09\n", encoding="utf-8"
    )
    (d / "notes.txt").write_text("hello", encoding="utf-8")
    res = ingest(make_ctx(D1), "pos")
    assert res["quarantined"] == 3
    q = make_ctx(D1).lake.read("quarantine/pos")
    reasons = sorted((r._line_no, tuple(r._reasons)) for r in q.collect() if r._line_no is not None)
    assert reasons == [(2, ("missing_required_column",)), (3, ("missing_required_column",))]
    assert q.filter(F.array_contains("_reasons", "unexpected_file_name")).count() == 1


def test_bad_csv_records_do_not_hide_the_rest(make_ctx, settings):
    from jobs.ingest import parse

    landing = settings.paths.landing
    huge = "x" * (parse.MAX_FIELD_CHARS + 10)
    write_pos(
        landing,
        D1,
        "S01",
        [
            sale("O1", 1, "2026-11-01 10:00:00"),
            f"O2,1,S01,2026-11-01 10:00:00,SALE,,,,{huge},生鲜,1,10.00,0,10.00,cash,,",
            sale("O3", 1, "2026-11-01 10:00:00", qty=20000, price="1.00", discount="0"),
            sale("O4", 1, "2026-11-01 10:00:00"),
            "O5,1,S01,2026-11-01 10:00:00,SALE,,,,SKU1,生鲜,1,10.00,0,10.00,cash,,,extra",
        ],
    )
    res = ingest(make_ctx(D1), "pos")
    lake = make_ctx(D1).lake
    assert res["rows_in"] == 5
    assert _rows(lake.read("bronze/pos_lines"), "order_id") == [("O1",), ("O4",)]
    q = {r._line_no: (r._reasons, len(r._raw)) for r in lake.read("quarantine/pos").collect()}
    assert q[3][0] == ["line_too_long"] and q[3][1] < parse.MAX_RAW_CHARS + 100
    assert q[4][0] == ["value_out_of_range"]
    assert q[6][0] == ["wrong_field_count"]


def test_extra_column_is_rescued(make_ctx, settings):
    landing = settings.paths.landing
    d = landing / "crm" / D1
    d.mkdir(parents=True)
    (d / "_SUCCESS").write_text("")
    from tests.ingest.landing_fixtures import CRM_HEADER

    (d / "members_20261101.csv").write_text(
        CRM_HEADER
        + ",wechat_openid\nM1,,,,,,,,,,,2024-01-01 10:00:00,store,,,,,active,2024-01-01 10:00:00,oX12\n",
        encoding="utf-8",
    )
    ingest(make_ctx(D1), "crm")
    (row,) = make_ctx(D1).lake.read("bronze/crm_members").collect()
    assert row.crm_id == "M1" and row._rescued == '{"wechat_openid":"oX12"}'


@pytest.mark.parametrize("broadcast_max", [2_000_000, 0], ids=["keys-broadcast", "keys-joined"])
def test_repeated_pos_lines_identical_or_conflicting(
    make_ctx, settings, monkeypatch, broadcast_max
):
    # Both ways of finding yesterday's lines with the batch's keys give the same flags.
    monkeypatch.setattr(ingest_job, "BROADCAST_KEYS_MAX_ROWS", broadcast_max)
    landing = settings.paths.landing
    write_pos(
        landing,
        D1,
        "S01",
        [sale("O1", 1, "2026-11-01 10:00:00"), sale("O1", 2, "2026-11-01 10:00:00")],
    )
    ingest(make_ctx(D1), "pos")
    write_pos(
        landing,
        D2,
        "S01",
        [
            sale("O1", 1, "2026-11-01 10:00:00"),  # identical repeat of yesterday's line
            sale("O1", 2, "2026-11-01 10:00:00", qty=5),  # same key, different content
            sale("O7", 1, "2026-11-02 10:00:00"),
            sale("O7", 1, "2026-11-02 10:00:00", discount="2.00"),  # conflicting twice in one file
        ],
    )
    res = ingest(make_ctx(D2), "pos")
    lake = make_ctx(D2).lake
    assert _rows(lake.read("bronze/pos_lines"), "order_id", "line_no", "qty", "_line_no") == [
        ("O1", 1, 2, 2),
        ("O1", 2, 2, 3),
        ("O7", 1, 2, 4),
    ]
    q = {r._line_no: r._reasons for r in lake.read("quarantine/pos").collect()}
    assert q == {3: ["duplicate_line_conflict"], 5: ["duplicate_line_conflict"]}
    # The identical repeat is a duplicate, recorded with the file of the line kept.
    dups = lake.read("bronze/pos_line_duplicates").collect()
    assert [(r.order_id, r.line_no, r._line_no, r.first_source_file) for r in dups] == [
        ("O1", 1, 2, "pos/2026-11-01/pos_S01_20261101.csv")
    ]
    assert res["rows_in"] == 4 and res["quarantined"] == 2 and res["rows_out"] == 1
    assert res["duplicates"] == 1
    m = lake.read("meta/ingest_manifest").filter("_source_file LIKE '%20261102.csv'").first()
    assert (m.rows_total, m.rows_good, m.rows_bad, m.rows_duplicate) == (4, 1, 2, 1)


def test_gb18030_that_is_also_valid_utf8_is_read_as_chinese():
    from jobs.ingest.parse import decode

    text, enc = decode("母婴,1\n".encode("gb18030"))
    assert (text, enc) == ("母婴,1\n", "gb18030")
    assert decode("母婴,1\n".encode())[1] == "utf-8"
    assert decode("Müller,1\n".encode()) == ("Müller,1\n", "utf-8")


def test_a_lake_from_before_field_issues_gets_the_column_on_the_next_ingest(make_ctx, settings):
    """Sail cannot evolve a schema on write: bronze written without ``_field_issues``
    is given the column (null, partitioning kept) before the first write that has it."""
    from deltalake import DeltaTable

    from jobs.schemas import table_schema

    write_crm(settings.paths.landing, D1, [_crm_line("M1")])
    ctx = make_ctx(D1)
    ingest(ctx, "crm")
    lake = ctx.lake
    old_columns = [c for c in table_schema("bronze/crm_members").columns if c != "_field_issues"]
    old = lake.read("bronze/crm_members").select(*old_columns)
    old.write.format("delta").mode("overwrite").option("overwriteSchema", "true").partitionBy(
        "_business_date"
    ).save(lake.path("bronze/crm_members"))
    assert "_field_issues" not in lake.read("bronze/crm_members").columns

    write_crm(settings.paths.landing, D2, [_crm_line("M2", "19551192")])
    ingest(make_ctx(D2), "crm")
    rows = {r.crm_id: r for r in lake.read("bronze/crm_members").collect()}
    assert rows["M1"]._field_issues is None and rows["M1"].name == "某人"
    assert [i.rule for i in rows["M2"]._field_issues] == ["birth_date_invalid"]
    table = DeltaTable(lake.path("bronze/crm_members"))
    assert table.metadata().partition_columns == ["_business_date"]


def _crm_line(crm_id: str, birth: str = "") -> str:
    return (
        f"{crm_id},,,,,,某人,,{birth},,,2024-01-01 10:00:00,store,,Y,N,N,active,2026-11-01 09:00:00"
    )


def test_manifest_of_new_files_appended_refused_entries_kept_once(make_ctx, settings, spark):
    """New files' manifest rows are appended (one commit, no MERGE: several Spark jobs less
    on a JVM engine); a path the manifest already holds (a refused entry found again) is
    still upserted, one row per path."""
    from bench.count_queries import counting

    landing = settings.paths.landing
    stray = landing / "pos" / "stray.csv"
    write_pos(landing, D1, "S01", [sale("O1", 1, "2026-11-01 10:00:00")])
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("not in a day folder\n")
    ingest(make_ctx(D1), "pos")
    stray.unlink()
    write_pos(landing, D2, "S01", [sale("O2", 1, "2026-11-02 10:00:00")])
    with counting() as night:  # only a new file: appended (a MERGE before)
        ingest(make_ctx(D2), "pos")
    stray.write_text("back again\n")
    write_pos(landing, D3, "S01", [sale("O3", 1, "2026-11-03 10:00:00")])
    ingest(make_ctx(D3), "pos")  # the stray is known: upserted
    manifest = make_ctx(D3).lake.read("meta/ingest_manifest")
    assert _rows(manifest, "_source_file", "status") == [
        ("pos/2026-11-01/pos_S01_20261101.csv", "ingested"),
        ("pos/2026-11-02/pos_S01_20261102.csv", "ingested"),
        ("pos/2026-11-03/pos_S01_20261103.csv", "ingested"),
        ("pos/stray.csv", "refused"),
    ]
    if hasattr(spark, "client"):  # counted through the Spark Connect client
        merges = [s for (*_, kind, s) in night.by_site if kind == "cmd:sql_command"]
        assert not [s for s in merges if "write_manifest" in s], merges


@pytest.mark.parametrize(
    ("batch_rows", "share_read"),
    [(3, None), (3, 0.1), (3, 1.0), (10_000_000, 0.1)],
    ids=["broadcast", "broadcast-ranged", "broadcast-ranges-skip-nothing", "joined"],
)
def test_existing_rows_with_the_batch_keys_only(spark, batch_rows, share_read):
    existing = spark.createDataFrame(
        [("O1", 1, "a"), ("O1", 2, "b"), ("O2", 1, "c"), (None, 1, "d"), ("O1", 1, "e"),
         ("O0", 1, "f"), ("O3", 1, "g")],
        "order_id string, line_no int, f string",
    )  # fmt: skip
    batch = spark.createDataFrame(
        [("O1", 1), ("O1", 1), ("O2", 3), (None, 1)], "order_id string, line_no int"
    )
    asked: list[dict] = []

    def files_read(ranges: dict) -> float:
        asked.append(ranges)
        assert share_read is not None
        return share_read

    kept = existing_with_keys(
        existing, batch, ["order_id", "line_no"], batch_rows,
        None if share_read is None else files_read,
    )  # fmt: skip
    # The batch's key ranges are asked for on a broadcast batch only.
    if share_read is not None and batch_rows == 3:
        assert asked == [{"order_id": ("O1", "O2"), "line_no": (1, 3)}]
    else:
        assert asked == []
    # Both copies of (O1, 1) stay; (O1, 2) and (O2, 1) share a column, not the key; a null
    # key repeats nothing (a join on it never matches).
    assert _rows(kept, "order_id", "line_no", "f") == [("O1", 1, "a"), ("O1", 1, "e")]


def test_a_batch_without_a_whole_key_repeats_nothing(spark):
    existing = spark.createDataFrame([("O1", 1)], "order_id string, line_no int")
    batch = spark.createDataFrame([("O1", None)], "order_id string, line_no int")
    kept = existing_with_keys(existing, batch, ["order_id", "line_no"], 1, lambda ranges: 0.0)
    assert kept.count() == 0
