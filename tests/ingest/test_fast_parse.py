"""The column-wise fast path (jobs.ingest.fast_parse) gives the row-by-row parser's rows.

Every file is parsed both ways and the staged Arrow tables compared whole: on a
generated landing zone with its planted mess, and on hand-made hostile files. Where the
fast path declines a file, the row-by-row parser takes it, so the tables are equal
either way; the tests also check that plain files do take the fast path.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from jobs.generate.landing import generate_landing
from jobs.ingest.parse import parse_file
from jobs.sources import SOURCES
from tests.ingest.landing_fixtures import CRM_HEADER, POS_HEADER

DAY = "2026-11-20"
SALE = "O{n},1,S01,2026-11-20 10:00:00,SALE,,VIP{n},1380013{n:04d},SKU1,生鲜,1,10.00,0,10.00,cash,,"


def both(path: Path, source: str) -> tuple[bool, list[dict], list[dict]]:
    """(fast path taken, fast rows, row-by-row rows) of one file."""
    rel = f"{source}/{DAY}/{path.name}"
    fast = parse_file(path, source, rel, DAY, fast=True)
    slow = parse_file(path, source, rel, DAY, fast=False)
    return fast.arrays is not None, fast.to_arrow().to_pylist(), slow.to_arrow().to_pylist()


def test_a_generated_zone_parses_the_same_both_ways(tmp_path):
    root = tmp_path / "landing"
    generate_landing(root, members=300, days=3, seed=5, end_date=dt.date.fromisoformat(DAY))
    taken: dict[str, list[bool]] = {}
    for source in SOURCES:
        for path in sorted((root / source).rglob("*")):
            if path.is_file() and path.name != "_SUCCESS":
                fast_taken, fast_rows, slow_rows = both(path, source)
                assert fast_rows == slow_rows, path
                taken.setdefault(source, []).append(fast_taken)
    # The generator plants mess in some files (broken lines, a store quoting every field,
    # GB18030, a BOM): without a quote inside a field, every CSV file goes the fast way.
    assert all(taken["pos"]) and all(taken["crm"]) and all(taken["loyalty"]), taken
    # Every JSON file that can be read at all (one is a truncated gzip) goes the fast way.
    assert sum(taken["web"]) >= len(taken["web"]) - 1, taken


def _pos(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / f"pos_S01_{DAY.replace('-', '')}.csv"
    path.write_bytes(body)
    return path


PLAIN = (POS_HEADER + "\n" + "\n".join(SALE.format(n=n) for n in range(3)) + "\n").encode()
QUOTED = (
    b"\n".join(
        b",".join(b'"' + field + b'"' for field in line.split(b","))
        for line in PLAIN[:-1].split(b"\n")
    )
    + b"\n"
)

CSV_CASES = {
    "plain": (PLAIN, True),
    "crlf": (PLAIN.replace(b"\n", b"\r\n"), True),
    "bom": (b"\xef\xbb\xbf" + PLAIN, True),
    "gb18030": (PLAIN.decode().encode("gb18030"), True),
    "no final newline": (PLAIN[:-1], True),
    "header only": ((POS_HEADER + "\n").encode(), True),
    "header and a blank line": ((POS_HEADER + "\n\n").encode(), True),
    "header and a blank CRLF line": ((POS_HEADER + "\r\n\r\n").encode(), True),
    "upper-case padded header": (
        PLAIN.replace(b"order_id,line_no", b" ORDER_ID , Line_No"),
        True,
    ),
    "padded values and ideographic space": (
        PLAIN.replace(b",SKU1,", " , SKU1\u3000,".encode()),
        True,
    ),
    "full-width phone digits": (
        PLAIN.replace(b"13800130000", "１３８００１３００００".encode()),
        True,
    ),
    "optional column missing": (
        PLAIN.replace(b",points_redeemed", b"").replace(b",,\n", b",\n"),
        True,
    ),
    "reordered columns": (
        b"line_no,order_id"
        + PLAIN[len(b"order_id,line_no") :].split(b"\n")[0]
        + b"\n"
        + b"1,O9"
        + SALE.format(n=9).encode()[len("O9,1") :]
        + b"\n",
        True,
    ),
    "quoted field": (PLAIN.replace(b"SKU1", b'"SKU,1"'), True),
    "some fields quoted, one of them across lines": (
        PLAIN.replace(b"SKU1", b'"SKU,1"').replace(b"cash", b'"ca\nsh"', 1),
        False,
    ),
    "some fields quoted, the header's too": (
        PLAIN.replace(b"order_id,line_no", b'"order_id",line_no').replace(b"SKU1", b'"S ""K"" U"'),
        True,
    ),
    "some fields quoted, a line of the wrong width": (
        PLAIN.replace(b"SKU1", b'"SKU,1"').replace(b",cash,", b',"cash","x",', 1),
        True,
    ),
    "every field quoted": (QUOTED, True),
    "every field quoted, CRLF and BOM": (b"\xef\xbb\xbf" + QUOTED.replace(b"\n", b"\r\n"), True),
    "quoted header, plain rows": (
        QUOTED.split(b"\n", 1)[0] + b"\n" + PLAIN.split(b"\n", 1)[1],
        True,
    ),
    "quoted commas, spaces, empty fields and full-width digits": (
        QUOTED.replace(b'"SKU1"', b'" SKU,1 "')
        .replace(b'"cash"', b'""')
        .replace(b"13800130001", "１３８００１３０００１".encode()),
        True,
    ),
    "quoted line of the wrong width, quoted blank line": (
        QUOTED.replace(b'"cash",', b'"cash","x",', 1).replace(b'\n"O2"', b'\n""," "\n"O2"'),
        True,
    ),
    "a doubled quote in a quoted field": (QUOTED.replace(b'"SKU1"', b'"SKU""1"'), True),
    "a space after a closing quote": (QUOTED.replace(b'"SKU1",', b'"SKU1" ,'), True),
    "a quote inside a plain field": (PLAIN.replace(b"SKU1", b'SK"U1'), True),
    "text after a closing quote": (QUOTED.replace(b'"SKU1",', b'"SKU"1,'), True),
    "quoted newline": (PLAIN.replace(b"SKU1", b'"SKU\n1"'), False),
    "blank line inside": (PLAIN.replace(b"\nO1,", b"\n\nO1,"), True),
    "blank lines at the end": (PLAIN + b"\n\n", True),
    "blank CRLF lines inside and at the end": (
        PLAIN.replace(b"\nO1,", b"\n\n\nO1,").replace(b"\n", b"\r\n") + b"\r\n",
        True,
    ),
    "a line of blank fields, short": (PLAIN.replace(b"\nO1,", " , ,\u3000\t\nO1,".encode()), True),
    "a line of spaces": (PLAIN.replace(b"\nO1,", b"\n   \nO1,"), True),
    "a line of empty fields at the header's width": (
        PLAIN.replace(b"\nO1,", b"\n" + b"," * (POS_HEADER.count(",")) + b"\nO1,"),
        True,
    ),
    "lone CR": (PLAIN.replace(b"\nO1,", b"\rO1,"), False),
    "wrong field count": (PLAIN.replace(b",cash,", b",cash,x,"), True),
    "too few fields": (PLAIN.replace(b",cash,", b",cash", 1), True),
    "every line of another delimiter": (PLAIN.replace(b",", b";"), False),
    "every data line of another delimiter": (
        PLAIN.split(b"\n", 1)[0] + b"\n" + PLAIN.split(b"\n", 1)[1].replace(b",", b";"),
        True,
    ),
    "wrong field count, a blank line and full-width digits": (
        PLAIN.replace(b",cash,", b",cash,x,", 1)
        .replace(b"\nO2,", b"\n\nO2,")
        .replace(b"13800130002", "１３８００１３０００２".encode()),
        True,
    ),
    "unit separator": (PLAIN.replace(b"SKU1", b"SKU\x1f1"), False),
    "extra column": (
        PLAIN.replace(b"points_redeemed\n", b"points_redeemed,note\n").replace(b",,\n", b",,hi\n"),
        False,
    ),
    "required column missing": (
        PLAIN.replace(b"order_id,", b"", 1).replace(b"\nO", b"\n", 3),
        False,
    ),
    "empty file": (b"", False),
}


@pytest.fixture()
def any_share_quoted(monkeypatch):
    """Every line may need the csv module (the cases are files of a few lines; the share
    rule has its own test)."""
    import jobs.ingest.fast_parse as fast_parse

    monkeypatch.setattr(fast_parse, "MAX_CSV_SHARE", 1.0)


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_csv_cases_parse_the_same_both_ways(tmp_path, case, any_share_quoted):
    body, expect_fast = CSV_CASES[case]
    fast_taken, fast_rows, slow_rows = both(_pos(tmp_path, body), "pos")
    assert fast_rows == slow_rows
    assert fast_taken is expect_fast


@pytest.mark.parametrize("piece_bytes", [1, 60])
def test_csv_cases_parse_the_same_in_pieces(tmp_path, monkeypatch, piece_bytes, any_share_quoted):
    """A file's lines are split in pieces (fast_parse.PIECE_BYTES, 32 MB): cut after
    every line, or anywhere, every case gives the row-by-row parser's rows, and the same
    files take the fast path."""
    import jobs.ingest.fast_parse as fast_parse

    monkeypatch.setattr(fast_parse, "PIECE_BYTES", piece_bytes)
    for case, (body, expect_fast) in sorted(CSV_CASES.items()):
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        fast_taken, fast_rows, slow_rows = both(_pos(folder, body), "pos")
        assert fast_rows == slow_rows, case
        assert fast_taken is expect_fast, case
    body = (POS_HEADER + "\n" + "\n".join(SALE.format(n=n) for n in range(50)) + "\n").encode()
    fast_taken, fast_rows, slow_rows = both(_pos(tmp_path, body.replace(b"\n", b"\r\n")), "pos")
    assert fast_taken and fast_rows == slow_rows and len(fast_rows) == 50


@pytest.mark.parametrize("every, expect_fast", [(1, False), (4, False), (10, True), (50, True)])
def test_files_quoting_a_field_on_many_lines_go_row_by_row(tmp_path, every, expect_fast):
    """A line quoting a field on its own is read by the csv module alone: on more than
    MAX_CSV_SHARE (1/8) of the lines the row-by-row parser is faster and takes the file.
    The rows are the same either way."""
    sales = [SALE.format(n=n) for n in range(400)]
    for n in range(0, 400, every):
        sales[n] = sales[n].replace("SKU1", '"SKU,1"')
    body = (POS_HEADER + "\n" + "\n".join(sales) + "\n").encode()
    fast_taken, fast_rows, slow_rows = both(_pos(tmp_path, body), "pos")
    assert fast_rows == slow_rows and len(fast_rows) == 400
    assert fast_taken is expect_fast
    assert sum(r["_fields"].count("SKU,1") for r in fast_rows) == len(range(0, 400, every))


def test_crm_identifiers_are_canonicalised_the_same_way(tmp_path):
    row = (
        "C1,VIP１,１３９ １２３４ ５６７８,A@B.COM,,,王伟,M,1990-01-01,上海,上海,"
        "2026-11-20 09:00:00,store,S01,1,1,1,active,2026-11-20 09:00:00"
    )
    path = tmp_path / f"members_{DAY.replace('-', '')}.csv"
    path.write_text(CRM_HEADER + "\n" + row + "\n", encoding="utf-8")
    fast_taken, fast_rows, slow_rows = both(path, "crm")
    assert fast_taken and fast_rows == slow_rows
    assert "139 1234 5678" in fast_rows[0]["_fields"]


EVENT = '{"event_id":"e%d","event_ts":"2026-11-20T10:00:00+08:00","anonymous_id":"a","event_type":"page_view","channel":"app","properties":{"page_url":"/p"}}'

JSON_CASES = {
    "plain": ("\n".join(EVENT % n for n in range(3)) + "\n", True),
    "types change between lines": (
        EVENT % 1
        + "\n"
        + (EVENT % 2).replace('"channel":"app"', '"channel":"app","revenue":"12.5"')
        + "\n"
        + (EVENT % 3).replace('"channel":"app"', '"channel":"app","revenue":12.5')
        + "\n",
        True,
    ),
    "crlf and blank lines": ("\r\n".join([EVENT % 1, "", "  ", EVENT % 2]) + "\r\n", True),
    "escaped chinese": ((EVENT % 1).replace("/p", "\\u5f20") + "\n", True),
    "broken line": (EVENT % 1 + "\n{broken\n" + EVENT % 2 + "\n", True),
    "array line": (EVENT % 1 + "\n[1, 2]\n", True),
    "unknown key": ((EVENT % 1).replace('"channel"', '"shoe_size":42,"channel"') + "\n", True),
    "NaN": ((EVENT % 1).replace('"channel":"app"', '"channel":"app","revenue":NaN') + "\n", True),
    "huge integer": (
        (EVENT % 1).replace('"channel":"app"', '"channel":"app","revenue":' + "9" * 30) + "\n",
        True,
    ),
    "lone surrogate": ((EVENT % 1).replace("/p", "\\ud800") + "\n", True),
    "lone CR": (EVENT % 1 + "\r" + EVENT % 2 + "\n", True),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_json_cases_parse_the_same_both_ways(tmp_path, case):
    text, expect_fast = JSON_CASES[case]
    path = tmp_path / f"events_{DAY.replace('-', '')}_0001.jsonl"
    path.write_text(text, encoding="utf-8")
    fast_taken, fast_rows, slow_rows = both(path, "web")
    assert fast_rows == slow_rows
    assert fast_taken is expect_fast


def test_gzip_and_invalid_utf8_json(tmp_path):
    path = tmp_path / f"events_{DAY.replace('-', '')}_0002.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(EVENT % n for n in range(5)) + "\n").encode()))
    fast_taken, fast_rows, slow_rows = both(path, "web")
    assert fast_taken and fast_rows == slow_rows and len(fast_rows) == 5
    bad = tmp_path / f"events_{DAY.replace('-', '')}_0003.jsonl"
    bad.write_bytes((EVENT % 1).replace("/p", "/\xff").encode("latin-1") + b"\n")
    fast_taken, fast_rows, slow_rows = both(bad, "web")
    assert not fast_taken and fast_rows == slow_rows


def test_rows_parsed_one_by_one_are_the_same_in_chunks(tmp_path, monkeypatch):
    """Rows parsed one by one go to Arrow FLUSH_ROWS at a time (a 5M-member CRM export's
    4.4M rows held as Python strings took 10 GB): chunk boundaries anywhere give the same
    staged rows, parse errors, rescued fields and lines cut for length included."""
    import jobs.ingest.parse as parse

    root = tmp_path / "landing"
    generate_landing(root, members=300, days=2, seed=7, end_date=dt.date.fromisoformat(DAY))
    files = [(p, s) for s in SOURCES for p in sorted((root / s).rglob("*"))
             if p.is_file() and p.name != "_SUCCESS"]  # fmt: skip
    cut = _pos(tmp_path, PLAIN + ("O9,1,S01," + "x" * 300 + "\n").encode() + PLAIN[-200:])
    files.append((cut, "pos"))

    def rows(path: Path, source: str) -> tuple[int, list[dict]]:
        pf = parse_file(path, source, f"{source}/{DAY}/{path.name}", DAY, fast=False)
        return len(pf.chunks), pf.to_arrow().to_pylist()

    monkeypatch.setattr(parse, "MAX_LINE_BYTES", 256)  # the 300-character line is cut
    whole = {path: rows(path, source)[1] for path, source in files}
    monkeypatch.setattr(parse, "FLUSH_ROWS", 2)
    chunked = 0
    for path, source in files:
        chunks, got = rows(path, source)
        assert got == whole[path], path
        chunked += chunks >= 1  # at least one flush before the last rows
    assert chunked >= 10, chunked  # files cut into chunks (the others are tiny)
    reasons = {r["_parse_error"] for rs in whole.values() for r in rs}
    assert {"line_too_long", "wrong_field_count"} <= reasons, reasons
