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
        (3, ["order_ts_out_of_range"]),
        (4, ["order_ts_invalid"]),
    ]


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
