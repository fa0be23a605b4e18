"""Column-wise parsing of well-formed landing files (the fast path of jobs.ingest.parse).

Most nights every file is well formed: one record per physical line, no quoting, the
expected columns. Such a file does not need the row-by-row parser: its lines are split
and trimmed column-wise with pyarrow compute (CSV) or checked line by line with orjson
and kept as one Arrow array (JSON lines), giving the very same staged rows (same ``_line_no``, ``_raw``, ``_fields``,
no ``_parse_error`` or ``_rescued``) at C speed.

Each function returns ``None`` the moment a file is anything but plain (quotes, a lone
CR, a blank line inside, a wrong field count, extra or missing columns, broken or
unusual JSON, an over-long line): the row-by-row parser then takes the whole file, so
every case it handles (quarantine reasons, rescued columns) stays exactly as it is.
tests/ingest/test_fast_parse.py proves both paths give the same rows.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def csv_columns(
    data: bytes,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    identifiers: frozenset[str],
    field_sep: str,
    max_raw_chars: int,
) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """(``_line_no``, ``_raw``, ``_fields``) of a plain CSV export, or None.

    ``data``: the file as UTF-8 bytes (BOM removed). ``columns``: the source's columns
    in staged order; ``identifiers``: those whose non-ASCII values are canonicalised
    (NFKC) as the row-by-row parser does. Grain of the arrays: one data line of the file.
    """
    if b'"' in data or field_sep.encode() in data or b"\x00" in data:
        return None
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends a record for the csv module
    data = data.replace(b"\r\n", b"\n")
    if data.endswith(b"\n"):
        data = data[:-1]
    first, _, body = data.partition(b"\n")
    header = _header(first.decode("utf-8"), columns, required)
    if header is None:
        return None
    raw = _lines(body)
    if len(raw) and not _plain_lines(raw, len(header), max_raw_chars):
        return None
    values = pc.split_pattern(raw, ",")
    position = {name: i for i, name in enumerate(header)}
    staged = [
        _column(values, position.get(name), len(raw), name in identifiers) for name in columns
    ]
    fields = pc.binary_join_element_wise(*staged, field_sep) if staged else raw
    line_no = pa.array(range(2, len(raw) + 2), pa.int64())
    return line_no, raw, fields


def _lines(body: bytes) -> pa.Array:
    """The lines of ``body`` (UTF-8, no CR left) as one string array, split by Arrow."""
    if not body:
        return pa.array([], pa.string())
    whole = pa.array([body], pa.large_binary())
    return pc.split_pattern(whole, b"\n").flatten().cast(pa.large_string()).cast(pa.string())


def _header(line: str, columns: tuple[str, ...], required: tuple[str, ...]) -> list[str] | None:
    """The header's column names, or None unless it names only known columns, once each."""
    if not line.strip():
        return None
    header = [name.strip().lstrip("\ufeff").lower() for name in line.split(",")]
    known = set(columns)
    if len(set(header)) != len(header) or not known.issuperset(header):
        return None
    if not set(required).issubset(header):
        return None
    return header


def _plain_lines(raw: pa.Array, width: int, max_raw_chars: int) -> bool:
    """Every line non-empty, of ``width`` fields and at most ``max_raw_chars`` long."""
    if pc.any(pc.equal(pc.utf8_length(raw), 0)).as_py():
        return False
    if pc.max(pc.utf8_length(raw)).as_py() > max_raw_chars:
        return False
    separators = pc.count_substring(raw, ",")
    return pc.all(pc.equal(separators, width - 1)).as_py()


def _column(values: pa.Array, index: int | None, rows: int, identifier: bool) -> pa.Array:
    """One staged column: the trimmed field at ``index`` of each line ("" when absent)."""
    if index is None:
        return pa.array([""] * rows, pa.string())
    column = pc.utf8_trim_whitespace(pc.list_element(values, index))
    if not identifier or pc.all(pc.string_is_ascii(column)).as_py() is not False:
        return column
    from jobs.identity.normalize import canonical_text

    return pa.array(
        [
            value if value.isascii() else canonical_text(value).strip()
            for value in column.to_pylist()
        ],
        pa.string(),
    )


def jsonl_lines(
    data: bytes, known: frozenset[str], max_raw_chars: int
) -> tuple[pa.Array, pa.Array] | None:
    """(``_line_no``, ``_raw``) of plain JSON lines, or None.

    ``data``: the file's bytes, decompressed, BOM removed. Plain: valid UTF-8, every
    non-blank line one JSON object (orjson, as the row-by-row parser) whose keys are all
    ``known``, none longer than ``max_raw_chars``. Types may differ between lines (a
    revenue sent as text on one line and as a number on the next): Spark's from_json
    types them later.
    """
    if b"\r" in data.replace(b"\r\n", b""):
        return None
    numbers, kept = [], []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if type(record) is not dict or not known.issuperset(record):
            return None
        numbers.append(number)
        kept.append(line.rstrip(b"\r"))
    try:
        raw = pa.array(kept, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None  # not UTF-8: the row-by-row parser keeps the line with replacements
    if len(raw) and pc.max(pc.utf8_length(raw)).as_py() > max_raw_chars:
        return None
    return pa.array(numbers, pa.int64()), raw
