"""Bad input never stops the night: every case through `cdp run --steps ingest_*,quality`.

One landing zone holds a healthy day plus one file per kind of bad input; one
`cdp run` in a subprocess takes it all in. Each case then checks what the user
sees: the quarantine reason (or the manifest entry), and that no traceback
reached the terminal. Cases that decide the outcome of the run on their own (an
empty day, a day that has not arrived, a source with nothing readable) get a
run each. docs/bad_input.md lists the same cases.
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.ingest.landing_fixtures import CRM_HEADER, POS_HEADER, event, sale
from tests.reliability.cli import INGEST_STEPS, cdp_env, one_line_error, run_cdp

D = "2026-11-05"
DD = D.replace("-", "")
TS = f"{D} 10:00:00"


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def crm_row(crm_id: str, updated: str = f"{D} 09:00:00") -> str:
    return f"{crm_id},,,,,,,,,,,2024-01-01 10:00:00,store,,Y,N,N,active,{updated}"


def healthy_day(landing: Path) -> dict[str, Path]:
    """Good files for D in all three sources, _SUCCESS written; returns the day folders."""
    days = {s: landing / s / D for s in ("pos", "web", "crm")}
    for d in days.values():
        d.mkdir(parents=True, exist_ok=True)
        (d / "_SUCCESS").write_text("")
    good = [sale(f"G{i}", 1, TS) for i in range(80)]
    (days["pos"] / f"pos_S01_{DD}.csv").write_text(
        "\n".join([POS_HEADER, *good]) + "\n", encoding="utf-8"
    )
    events = [json.dumps(event(f"ev{i}", f"{D}T10:00:00+08:00", anon=f"A{i}")) for i in range(30)]
    (days["web"] / f"events_{DD}_p1.jsonl").write_text("\n".join(events) + "\n")
    (days["crm"] / f"members_{DD}.csv").write_text(
        "\n".join([CRM_HEADER] + [crm_row(f"M{i}") for i in range(10)]) + "\n", encoding="utf-8"
    )
    return days


def bad_files(days: dict[str, Path]) -> None:
    pos, web = days["pos"], days["web"]

    def pos_file(store: str, text: str | bytes, encoding: str = "utf-8") -> None:
        data = text if isinstance(text, bytes) else text.encode(encoding)
        (pos / f"pos_{store}_{DD}.csv").write_bytes(data)

    # Schema drift: an extra column is kept in _rescued; a missing required one
    # quarantines every row of the file.
    pos_file("DRIFT", f"{POS_HEADER},coupon_code\n{sale('X1', 1, TS)},CP10\n")
    no_amount = POS_HEADER.replace(",amount", "")
    pos_file("NOAMT", f"{no_amount}\nX2,1,S01,{TS},SALE,,,,SKU1,生鲜,1,10.00,0,wechat,,\n")
    # Wrong encodings and things that are not CSV at all.
    pos_file("LATIN1", f"{POS_HEADER}\n{sale('X3', 1, TS, category='Café')}\n", "latin-1")
    pos_file("UTF16", f"{POS_HEADER}\n{sale('X4', 1, TS)}\n", "utf-16")
    pos_file("EMPTY", b"")
    pos_file("PNG", _png())
    # Dates out of range, negative and absurd values, a conflicting duplicate line.
    pos_file(
        "DATES",
        "\n".join(
            [
                POS_HEADER,
                sale("X5", 1, "2099-01-01 10:00:00"),
                sale("X6", 1, "1999-12-31 10:00:00"),
                sale("X7", 1, "2026-02-30 10:00:00"),
                sale("X6B", 1, "1987-03-01 09:30:00"),
            ]
        )
        + "\n",
    )
    pos_file(
        "AMOUNTS",
        "\n".join(
            [
                POS_HEADER,
                f"X8,1,S01,{TS},SALE,,,,SKU1,生鲜,1,10.00,0,-5.00,cash,,",
                sale("X9", 1, TS, qty=20000, price="1.00", discount="0"),
                sale("X10", 1, TS, qty=1, price="5000000.00", discount="0"),
                f"X11,1,S01,{TS},SALE,,,,SKU1,生鲜,1,10.00,-1.00,11.00,cash,,",
            ]
        )
        + "\n",
    )
    pos_file(
        "DUPS",
        "\n".join([POS_HEADER, sale("XD", 1, TS, qty=1), sale("XD", 1, TS, qty=3)]) + "\n",
    )
    # Web: broken JSON, a far-future event, a truncated gzip.
    (web / f"events_{DD}_bad.jsonl").write_text(
        '{"event_id": "w1", "event_ts": \n'
        + json.dumps(event("w2", "2099-01-01T00:00:00+08:00"))
        + "\n[1, 2]\n"
    )
    (web / f"events_{DD}_trunc.jsonl.gz").write_bytes(
        gzip.compress(b'{"event_id": "w3"}\n' * 50)[:-20]
    )
    hostile_entries(days)
    optional_field_rows(days)


def hostile_entries(days: dict[str, Path]) -> None:
    """Links out of the landing zone, folders that are not dates, stray files (issue 12.4-5)."""
    pos = days["pos"]
    landing, outside = pos.parent.parent, pos.parent.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.csv").write_text(f"{POS_HEADER}\n{sale('LEAK1', 1, TS)}\n")
    (pos / f"pos_LINK_{DD}.csv").symlink_to(outside / "secret.csv")
    (pos / f"pos_PASSWD_{DD}.csv").symlink_to("/etc/passwd")
    # A whole day folder that is a link to a folder outside the landing zone.
    (outside / "day").mkdir(exist_ok=True)
    (outside / "day" / "_SUCCESS").write_text("")
    (outside / "day" / f"pos_S01_{DD}.csv").write_text(f"{POS_HEADER}\n{sale('LEAK2', 1, TS)}\n")
    (landing / "pos" / "2026-11-04").symlink_to(outside / "day", target_is_directory=True)
    # Folder names that date.fromisoformat would take (or that are not dates at all).
    for name in ("20261105", "2026-W45-4", "2026-13-01"):
        d = landing / "pos" / name
        d.mkdir()
        (d / "_SUCCESS").write_text("")
        (d / f"pos_S01_{DD}.csv").write_text(f"{POS_HEADER}\n{sale('ALIAS', 1, TS)}\n")
    (landing / "pos" / f"pos_S01_{DD}.csv").write_text(f"{POS_HEADER}\n{sale('STRAY', 1, TS)}\n")


FULL_WIDTH_PHONE = "１３９１２３４５６７８"


def optional_field_rows(days: dict[str, Path]) -> None:
    """Rows whose only fault is an optional field (CONTRACT 1), full-width identifiers (12.6)."""
    crm = [
        CRM_HEADER,
        # invalid birth date, e-mail without @, ID card failing its checksum, unknown gender
        "F1,,13911112222,li.at.qq.com,110101199003070021,,李一,U,19551192,,,"
        f"2024-01-01 10:00:00,store,,Y,N,N,active,{D} 09:00:00",
        # full-width phone and e-mail, a zero-width space in the card number
        f"F2,K\u200b77,{FULL_WIDTH_PHONE},ＷＡＮＧ＠ＱＱ．ＣＯＭ,,,王二,F,1990-01-01,,,"
        f"2024-01-01 10:00:00,store,,Y,N,N,active,{D} 09:00:00",
        # a broken required field still quarantines the row
        "F3,,13933334444,,,,,,19551192,,,2024-01-01 10:00:00,store,,,,,active,not a time",
    ]
    (days["crm"] / f"members_{DD}.csv").write_text(
        "\n".join([*crm[:1], *[crm_row(f"M{i}") for i in range(10)], *crm[1:]]) + "\n",
        encoding="utf-8",
    )
    (days["pos"] / f"pos_OPT_{DD}.csv").write_text(
        f"{POS_HEADER}\nP1,1,S01,{TS},SALE,,C9,,SKU1,生鲜,1,10.00,0,10.00,bitcoin,-5,\n",
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """One `cdp run` over the healthy day and every bad file; (process, base folder)."""
    base = tmp_path_factory.mktemp("bad_input")
    days = healthy_day(base / "landing")
    bad_files(days)
    proc = run_cdp(["run", "--date", D, "--steps", INGEST_STEPS], cdp_env(base))
    return proc, base


def _quarantine(spark, base: Path, source: str, name: str) -> list[tuple[int | None, list[str]]]:
    q = spark.read.format("delta").load(str(base / "lake" / "quarantine" / source))
    rows = q.where(F.col("_source_file").endswith(name)).collect()
    return sorted(((r._line_no, sorted(r._reasons)) for r in rows), key=lambda x: x[0] or 0)


def _manifest(spark, base: Path, name: str):
    m = spark.read.format("delta").load(str(base / "lake" / "meta" / "ingest_manifest"))
    (row,) = m.where(F.col("_source_file").endswith(name)).collect()
    return row


def test_the_night_completes_without_traceback(night):
    proc, _ = night
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert "[quality" in proc.stdout and "done in" in proc.stdout


def test_extra_column_is_rescued(spark, night):
    _, base = night
    bronze = spark.read.format("delta").load(str(base / "lake" / "bronze" / "pos_lines"))
    (row,) = bronze.where("order_id = 'X1'").collect()
    assert json.loads(row._rescued) == {"coupon_code": "CP10"}


def test_missing_required_column_quarantines_the_file(spark, night):
    _, base = night
    assert _quarantine(spark, base, "pos", f"pos_NOAMT_{DD}.csv") == [
        (2, ["missing_required_column"])
    ]
    assert "amount" in _manifest(spark, base, f"pos_NOAMT_{DD}.csv").error


@pytest.mark.parametrize("store", ["LATIN1", "UTF16", "PNG"])
def test_unreadable_file_is_one_quarantine_row(spark, night, store):
    _, base = night
    name = f"pos_{store}_{DD}.csv"
    assert _quarantine(spark, base, "pos", name) == [(None, ["file_unreadable"])]
    m = _manifest(spark, base, name)
    assert m.status == "unreadable" and m.error.startswith("file_unreadable")


def test_empty_file_is_recorded_with_no_rows(spark, night):
    _, base = night
    m = _manifest(spark, base, f"pos_EMPTY_{DD}.csv")
    assert (m.rows_total, m.rows_good, m.rows_bad) == (0, 0, 0)
    assert _quarantine(spark, base, "pos", f"pos_EMPTY_{DD}.csv") == []


def test_dates_out_of_range(spark, night):
    _, base = night
    assert _quarantine(spark, base, "pos", f"pos_DATES_{DD}.csv") == [
        (2, ["order_ts_out_of_range"]),
        (4, ["order_ts_invalid"]),
    ]
    # No built-in age limit (CONTRACT 1): a sale from 1999 or 1987 is history, not an error.
    bronze = spark.read.format("delta").load(str(base / "lake" / "bronze" / "pos_lines"))
    old = {
        r.order_id: str(r.order_date) for r in bronze.where("order_id IN ('X6', 'X6B')").collect()
    }
    assert old == {"X6": "1999-12-31", "X6B": "1987-03-01"}


def test_negative_and_absurd_amounts(spark, night):
    _, base = night
    assert _quarantine(spark, base, "pos", f"pos_AMOUNTS_{DD}.csv") == [
        (2, ["amount_invalid", "amount_mismatch"]),
        (3, ["value_out_of_range"]),
        (4, ["value_out_of_range"]),
        (5, ["discount_invalid"]),
    ]


def test_duplicate_order_line_with_different_content(spark, night):
    _, base = night
    bronze = spark.read.format("delta").load(str(base / "lake" / "bronze" / "pos_lines"))
    assert [r.qty for r in bronze.where("order_id = 'XD'").collect()] == [1]  # first wins
    assert _quarantine(spark, base, "pos", f"pos_DUPS_{DD}.csv") == [
        (3, ["duplicate_line_conflict"])
    ]


def test_web_broken_json_future_event_and_truncated_gzip(spark, night):
    _, base = night
    assert _quarantine(spark, base, "web", f"events_{DD}_bad.jsonl") == [
        (1, ["invalid_json"]),
        (2, ["event_ts_out_of_range"]),
        (3, ["not_an_object"]),
    ]
    assert _quarantine(spark, base, "web", f"events_{DD}_trunc.jsonl.gz") == [
        (None, ["file_unreadable"])
    ]


def test_links_out_of_the_landing_zone_are_refused_never_read(spark, night):
    proc, base = night
    refused = {
        "pos/2026-11-05/pos_LINK_20261105.csv": "symlink",
        "pos/2026-11-05/pos_PASSWD_20261105.csv": "symlink",
        "pos/2026-11-04": "symlink",
    }
    for rel, reason in refused.items():
        m = _manifest(spark, base, rel)
        assert (m.status, m.error.split(":")[0], m.rows_total) == ("refused", reason, 0), rel
    lake = base / "lake"
    for table in ("bronze/pos_lines", "quarantine/pos"):
        df = spark.read.format("delta").load(str(lake / table))
        assert df.where(F.col("_source_file").isin(*refused)).count() == 0
    quarantine = spark.read.format("delta").load(str(lake / "quarantine" / "pos"))
    assert quarantine.where("_raw LIKE '%root:%' OR _raw LIKE '%LEAK%'").count() == 0
    bronze = spark.read.format("delta").load(str(lake / "bronze" / "pos_lines"))
    assert bronze.where("order_id LIKE 'LEAK%'").count() == 0
    assert "refused=" in proc.stdout and "pos/2026-11-05/pos_PASSWD_20261105.csv" in proc.stdout


def test_folders_that_are_not_dates_and_stray_files_are_reported(spark, night):
    proc, base = night
    for rel, reason in {
        "pos/20261105": "not_a_day_folder",
        "pos/2026-W45-4": "not_a_day_folder",
        "pos/2026-13-01": "not_a_day_folder",
        f"pos/pos_S01_{DD}.csv": "stray_file",
    }.items():
        m = _manifest(spark, base, rel)
        assert (m.status, m.error.split(":")[0], m.business_date) == ("refused", reason, None)
        assert rel in proc.stdout  # named in the run summary line
    bronze = spark.read.format("delta").load(str(base / "lake" / "bronze" / "pos_lines"))
    assert bronze.where("order_id IN ('ALIAS', 'STRAY')").count() == 0
    # The real day's file of the same name was taken in once, under its own folder.
    assert _manifest(spark, base, f"pos/{D}/pos_S01_{DD}.csv").rows_good == 80


def test_invalid_optional_fields_are_nulled_and_recorded_not_quarantined(spark, night):
    _, base = night
    lake = base / "lake"
    crm = spark.read.format("delta").load(str(lake / "bronze" / "crm_members"))
    (f1,) = crm.where("crm_id = 'F1'").collect()
    assert (f1.phone, f1.name) == ("13911112222", "李一")  # the valid fields are kept
    assert (f1.birth_date, f1.email, f1.id_card_no, f1.gender) == (None, None, None, None)
    assert sorted((i.field, i.rule, i.value) for i in f1._field_issues) == [
        ("birth_date", "birth_date_invalid", "19551192"),
        ("email", "email_invalid", "li.at.qq.com"),
        ("gender", "gender_invalid", "U"),
        ("id_card_no", "id_card_invalid", "110101199003070021"),
    ]
    assert _quarantine(spark, base, "crm", f"members_{DD}.csv") == [
        (14, ["birth_date_invalid", "updated_ts_invalid"])
    ]
    pos = spark.read.format("delta").load(str(lake / "bronze" / "pos_lines"))
    (p1,) = pos.where("order_id = 'P1'").collect()
    assert (p1.payment_method, p1.points_earned) == (None, None)
    assert sorted(i.rule for i in p1._field_issues) == ["payment_method_invalid", "points_invalid"]
    # The quality step counts them, per rule.
    runs = spark.read.format("delta").load(str(lake / "meta" / "runs"))
    (q,) = runs.where("step = 'quality'").collect()
    detail = json.loads(q.detail)
    assert detail["fields_nulled_crm"] == {
        "birth_date_invalid": 1,
        "email_invalid": 1,
        "gender_invalid": 1,
        "id_card_invalid": 1,
    }
    assert detail["fields_nulled_pos"] == {"payment_method_invalid": 1, "points_invalid": 1}


def test_full_width_identifiers_are_folded_on_the_way_in(spark, night):
    _, base = night
    crm = spark.read.format("delta").load(str(base / "lake" / "bronze" / "crm_members"))
    (f2,) = crm.where("crm_id = 'F2'").collect()
    assert (f2.phone, f2.email, f2.member_card_no) == ("13912345678", "WANG@QQ.COM", "K77")
    assert f2._field_issues == []


def test_healthy_rows_all_arrived(spark, night):
    _, base = night
    bronze = spark.read.format("delta").load(str(base / "lake" / "bronze" / "pos_lines"))
    assert bronze.where(F.col("_source_file").endswith(f"pos_S01_{DD}.csv")).count() == 80
    web = spark.read.format("delta").load(str(base / "lake" / "bronze" / "web_events"))
    assert web.where(F.col("_source_file").endswith("_p1.jsonl")).count() == 30


def test_day_with_success_and_no_files(tmp_path):
    for s in ("pos", "web", "crm"):
        d = tmp_path / "landing" / s / D
        d.mkdir(parents=True)
        (d / "_SUCCESS").write_text("")
    proc = run_cdp(["run", "--date", D, "--steps", INGEST_STEPS], cdp_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("rows_in=0") == 4  # three ingest steps and quality


def test_day_not_arrived_is_one_clear_line(tmp_path):
    d = tmp_path / "landing" / "pos" / D
    d.mkdir(parents=True)  # no _SUCCESS
    proc = run_cdp(["run", "--date", D, "--steps", INGEST_STEPS], cdp_env(tmp_path))
    line = one_line_error(proc)
    assert "_SUCCESS" in line and "--allow-incomplete" in line


def test_nothing_readable_fails_quality_with_one_line(tmp_path):
    days = {s: tmp_path / "landing" / s / D for s in ("pos", "web", "crm")}
    for d in days.values():
        d.mkdir(parents=True)
        (d / "_SUCCESS").write_text("")
    (days["pos"] / f"pos_S01_{DD}.csv").write_bytes(_png())
    # The gate counts from ingest.min_rows_for_rate rows: open it to this one-file day.
    import shutil

    import yaml

    from jobs.config import CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["min_rows_for_rate"] = 0
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    env = cdp_env(tmp_path, CDP_CONF_DIR=str(conf))
    proc = run_cdp(["run", "--date", D, "--steps", INGEST_STEPS], env)
    line = one_line_error(proc)
    assert "quality" in line and "quarantine rate above" in line and "pos" in line


def test_pos_file_resent_byte_identical_under_a_new_name_does_not_fail_the_night(spark, tmp_path):
    """Issue 12.9: the day's only POS file repeats yesterday's rows, byte for byte."""
    day1, day2 = "2026-11-04", D
    lines = [sale(f"R{i}", 1, f"{day1} 10:00:00") for i in range(40)]
    text = "\n".join([POS_HEADER, *lines]) + "\n"
    for day in (day1, day2):
        for s in ("pos", "web", "crm"):
            d = tmp_path / "landing" / s / day
            d.mkdir(parents=True)
            (d / "_SUCCESS").write_text("")
        name = f"pos_S01_{day.replace('-', '')}.csv"
        (tmp_path / "landing" / "pos" / day / name).write_text(text, encoding="utf-8")
    env = cdp_env(tmp_path)
    first = run_cdp(["run", "--date", day1, "--steps", INGEST_STEPS], env)
    assert first.returncode == 0, first.stderr
    second = run_cdp(["run", "--date", day2, "--steps", INGEST_STEPS], env)
    assert second.returncode == 0, second.stderr
    assert "duplicates=40" in second.stdout and "quarantined=0" in second.stdout
    m = _manifest(spark, tmp_path, f"pos_S01_{DD}.csv")
    assert (m.rows_total, m.rows_good, m.rows_bad, m.rows_duplicate) == (40, 0, 0, 40)
    lake = tmp_path / "lake"
    dups = spark.read.format("delta").load(str(lake / "bronze" / "pos_line_duplicates"))
    assert {r.first_source_file for r in dups.collect()} == {"pos/2026-11-04/pos_S01_20261104.csv"}
    assert dups.count() == 40
    assert spark.read.format("delta").load(str(lake / "quarantine" / "pos")).count() == 0
    assert spark.read.format("delta").load(str(lake / "bronze" / "pos_lines")).count() == 40
