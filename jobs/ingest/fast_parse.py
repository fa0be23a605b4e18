"""Column-wise parsing of landing files (the fast path of jobs.ingest.parse).

Most nights every CSV file is well formed: one record per physical line,
the expected columns, no quotes or every field of a line quoted. Such a file does not
need the row-by-row parser: its lines are split and trimmed column-wise with pyarrow
compute, giving the very same staged rows (``_line_no``, ``_raw``, ``_fields``) at C
speed; a blank line, one with the wrong number of fields or one quoted otherwise is
looked at alone, as the row-by-row parser would. :func:`csv_columns` returns None the
moment a file is anything else (a quoted line break, a lone CR, extra or missing
columns, an over-long line): the row-by-row parser then takes the whole file, so every
case it handles stays exactly as it is.

JSON lines are checked line by line with orjson either way; :func:`jsonl_lines` keeps
the rows, broken ones included, as Arrow arrays instead of Python lists.
tests/ingest/test_fast_parse.py proves both paths give the same rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# A file's lines are split and trimmed this many bytes at a time: every step copies
# what it works on, and a 5M-member first loyalty export (649 MB) taken whole peaked at
# 7.6 GB in its parse worker.
PIECE_BYTES = 32 << 20
# Up to this share of a piece's lines may need the csv module itself (a field quoted on
# its own). 200k POS lines, best of 5: one line in 200 so quoted 0.55 s against the
# row-by-row parser's 1.23 s, one in 20 0.71 s against 1.30 s; every line so took the
# fast path (a csv reader per line then) 2.65 s against 1.17 s.
MAX_CSV_SHARE = 0.125


def csv_columns(
    data: bytes,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    identifiers: frozenset[str],
    field_sep: str,
    max_raw_chars: int,
) -> dict[str, pa.Array | pa.ChunkedArray] | None:
    """The staged columns (``_line_no``, ``_raw``, ``_fields`` and, when a line has the
    wrong number of fields, ``_parse_error``) of a CSV export, or None.

    ``data``: the file as UTF-8 bytes (BOM removed). ``columns``: the source's columns
    in staged order; ``identifiers``: those whose non-ASCII values are canonicalised
    (NFKC) as the row-by-row parser does. Grain of the arrays: one data line of the file
    (a blank line is no row). When a line's quotes, if any, enclose its every field
    (:func:`_line_fields`), every physical line is one record, so a line with the wrong
    number of fields is a ``wrong_field_count`` row here as there, and the rest of its
    file still goes column-wise (at 1M members, 106 of 200 POS files and every CRM file
    held one such line among thousands; one store quotes every field).
    """
    if field_sep.encode() in data or b"\x00" in data:
        return None
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends a record for the csv module
    header_end = data.find(b"\n")
    first = data if header_end < 0 else data[:header_end]
    header = _header(first.rstrip(b"\r").decode("utf-8"), columns, required)
    if header is None or _mostly_quoted(data[header_end + 1 : header_end + 1 + (64 << 10)]):
        return None
    parts: list[dict[str, pa.Array]] = []
    next_line = 2  # the header is line 1
    for piece in _pieces(data, len(data) if header_end < 0 else header_end + 1):
        rows = _piece_rows(piece, next_line, header, columns, identifiers, field_sep,
                           max_raw_chars)  # fmt: skip
        if rows is None:
            return None
        part, lines = rows
        parts.append(part)
        next_line += lines
    return _concat_parts(parts)


def _mostly_quoted(sample: bytes) -> bool:
    """Whether more than MAX_CSV_SHARE of the whole lines of ``sample`` (a file's first
    64 KB of rows) quote a field on its own, so that the file goes row by row at once."""
    lines = sample.split(b"\n")[:-1]
    own = sum(
        1
        for line in lines
        if b'"' in line and not (line.startswith(b'"') and line.rstrip(b"\r").endswith(b'"'))
    )
    return own > len(lines) * MAX_CSV_SHARE


def _concat_parts(parts: list[dict[str, pa.Array]]) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The pieces' columns one after the other (``_parse_error`` only when a row has one)."""
    out: dict[str, pa.Array | pa.ChunkedArray] = {
        "_line_no": pa.array(
            np.concatenate([p["_line_no"] for p in parts]) if parts else [], pa.int64()
        )
    }
    for name in ("_raw", "_fields"):
        out[name] = pa.chunked_array([p[name] for p in parts], pa.string())
    if any("_parse_error" in p for p in parts):
        out["_parse_error"] = pa.chunked_array(
            [p.get("_parse_error", pa.nulls(len(p["_raw"]), pa.string())) for p in parts],
            pa.string(),
        )
    return out


def _pieces(data: bytes, start: int) -> Iterator[bytes]:
    """``data[start:]`` in pieces of about PIECE_BYTES, each cut at a line end, without
    that line break (LF or CRLF), LFs inside for CRLFs; the file's last line break is
    dropped. Each piece holds one line more than its line breaks (an empty piece: one
    blank line)."""
    while start < len(data):
        cut = data.find(b"\n", start + PIECE_BYTES)
        end = len(data) if cut < 0 else cut
        piece = data[start:end].replace(b"\r\n", b"\n")
        if cut < 0 and piece.endswith(b"\n"):
            piece = piece[:-1]
        if cut >= 0 and piece.endswith(b"\r"):  # the CR of the CRLF cut at
            piece = piece[:-1]
        yield piece
        start = len(data) if cut < 0 else cut + 1


def _piece_rows(
    piece: bytes,
    first_line: int,
    header: list[str],
    columns: tuple[str, ...],
    identifiers: frozenset[str],
    field_sep: str,
    max_raw_chars: int,
) -> tuple[dict[str, np.ndarray | pa.Array], int] | None:
    """(staged columns of one piece's rows, the piece's number of lines), its lines
    numbered from ``first_line``; None when a line is over ``max_raw_chars`` (the
    row-by-row parser truncates it)."""
    raw = _lines(piece) if piece else pa.array([""], pa.string())
    lengths = pc.utf8_length(raw)
    if pc.max(lengths).as_py() > max_raw_chars:
        return None
    values = _line_fields(raw, piece)
    if values is None:
        return None
    plain = pc.and_(pc.equal(pc.list_value_length(values), len(header)), pc.greater(lengths, 0))
    plain_rows = plain.to_numpy(zero_copy_only=False)
    errors = _broken_lines(values, np.flatnonzero(~plain_rows))
    cells = _cells(values.filter(plain).flatten(), header, columns, identifiers)
    staged = _staged_rows(cells, header, columns, int(plain_rows.sum()))
    fields = pc.binary_join(staged, field_sep)
    kept_rows = plain_rows.copy()
    kept_rows[list(errors)] = True  # blank lines are no rows
    kept = np.flatnonzero(kept_rows)
    part: dict[str, np.ndarray | pa.Array] = {"_line_no": kept + first_line}
    if errors:
        rank = np.cumsum(plain_rows) - 1
        fields = fields.take(pa.array(rank[kept], mask=~plain_rows[kept]))
        part["_parse_error"] = pa.array([errors.get(i) for i in kept.tolist()], pa.string())
    part["_raw"] = raw if len(kept) == len(raw) else raw.take(pa.array(kept))
    part["_fields"] = fields
    return part, len(raw)


def _line_fields(raw: pa.Array, piece: bytes) -> pa.Array | None:
    """Each line's fields as the csv module reads them: split at the commas; for a line
    whose every field is quoted (``"a","b,c",""``) with no quote inside, split at the
    ``","`` between them; any other line holding a quote is read by the csv module
    itself. None when such a line is not a whole record (a quoted field going on past
    its end) or such lines are over MAX_CSV_SHARE of the piece: the row-by-row parser
    takes the file."""
    if b'"' not in piece:
        return pc.split_pattern(raw, ",")
    quotes = pc.count_substring(raw, '"')
    has_quote = pc.greater(quotes, 0)
    inner = pc.utf8_slice_codeunits(raw, 1, -1)
    quoted = pc.split_pattern(inner, '","')
    # Quoted whole: a quote first and last, and only the quotes of the '","' between
    # fields inside (each of the n fields then holds none).
    separators = pc.multiply(pc.subtract(pc.list_value_length(quoted), 1), 2)
    whole = pc.and_(
        pc.and_(pc.starts_with(raw, '"'), pc.ends_with(raw, '"')),
        pc.and_(
            pc.greater_equal(pc.utf8_length(raw), 2), pc.equal(pc.subtract(quotes, 2), separators)
        ),
    )
    fields = pc.if_else(has_quote, quoted, pc.split_pattern(raw, ","))
    other = pc.and_(has_quote, pc.invert(whole))
    if not pc.any(other).as_py():
        return fields
    at = np.flatnonzero(other.to_numpy(zero_copy_only=False))
    if len(at) > len(raw) * MAX_CSV_SHARE:
        return None  # the row-by-row parser is faster (a field quoted on most lines)
    records = _csv_records(raw.take(pa.array(at)).to_pylist())
    if records is None:
        return None
    by_line: list[list[str] | None] = [None] * len(raw)
    for i, record in zip(at.tolist(), records, strict=True):
        by_line[i] = record
    return pc.if_else(other, pa.array(by_line, fields.type), fields)


def _csv_records(lines: list[str]) -> list[list[str]] | None:
    """Each line's fields as the csv module reads it at the start of a record, or None
    when a line is not a whole record (its last quoted field goes on to the next line)
    or cannot be read. One reader reads them all, and a line more: each record must take
    exactly one line (a reader per line took 2.4 times the row-by-row parser's time on a
    file quoting a field on every line)."""
    reader = csv.reader(line + "\n" for line in [*lines, "next"])
    records = []
    try:
        for number, record in enumerate(reader, start=1):
            if reader.line_num != number:
                return None
            records.append(record)
    except csv.Error:
        return None
    if len(records) != len(lines) + 1:
        return None
    return records[:-1]


def _broken_lines(values: pa.Array, at: np.ndarray) -> dict[int, str]:
    """{line: ``wrong_field_count``} of the lines ``at`` (not of the header's width, or
    empty) that are rows: a line of blank fields only is no row, as in the row-by-row
    parser (few lines: each is looked at in Python). ``values``: each line's fields."""
    if not len(at):
        return {}
    fields = values.take(pa.array(at)).to_pylist()
    return {
        int(i): "wrong_field_count"
        for i, line in zip(at, fields, strict=True)
        if any(f.strip() for f in line)
    }


def _cells(
    flat: pa.Array, header: list[str], columns: tuple[str, ...], identifiers: frozenset[str]
) -> pa.Array:
    """Every field of the file, row after row, trimmed; identifiers canonicalised (NFKC).

    A trailing "" is appended: the value of a column the file does not send.
    """
    cells = pc.utf8_trim_whitespace(flat)
    positions = [i for i, name in enumerate(header) if name in identifiers]
    if positions:
        ascii_cells = pc.string_is_ascii(cells).to_numpy(zero_copy_only=False)
        grid = ascii_cells.reshape(-1, len(header))[:, positions]
        rows, cols = np.nonzero(~grid)
        if len(rows):
            cells = _canonical(cells, rows * len(header) + np.array(positions)[cols])
    return pa.concat_arrays([cells, pa.array([""], pa.string())])


def _canonical(cells: pa.Array, at: np.ndarray) -> pa.Array:
    """``cells`` with the identifier values at ``at`` canonicalised as the row parser does.

    Only those values leave Arrow, not every cell of the piece as a Python string."""
    from jobs.identity.normalize import canonical_text

    at = np.sort(at)  # the replacements are taken in position order
    values = cells.take(pa.array(at)).to_pylist()
    fixed = pa.array([canonical_text(v).strip() for v in values], pa.string())
    mask = np.zeros(len(cells), dtype=bool)
    mask[at] = True
    return pc.replace_with_mask(cells, pa.array(mask), fixed)


def _staged_rows(
    cells: pa.Array, header: list[str], columns: tuple[str, ...], rows: int
) -> pa.Array:
    """A list per line: its cells in the source's column order ("" for an absent column)."""
    width, missing = len(header), len(cells) - 1
    position = {name: i for i, name in enumerate(header)}
    order = np.array([position.get(name, -1) for name in columns], dtype=np.int64)
    starts = (np.arange(rows, dtype=np.int64) * width)[:, None]
    take = np.where(order >= 0, starts + order, missing).ravel()
    offsets = pa.array(np.arange(0, rows * len(columns) + 1, len(columns), dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, cells.take(pa.array(take)))


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
    names = line.split(",")
    if '"' in line:
        fields = _line_fields(pa.array([line], pa.string()), line.encode())
        if fields is None:
            return None
        names = fields[0].as_py()
    header = [name.strip().lstrip("\ufeff").lower() for name in names]
    known = set(columns)
    if len(set(header)) != len(header) or not known.issuperset(header):
        return None
    if not set(required).issubset(header):
        return None
    return header


def jsonl_lines(data: bytes, known: frozenset[str], max_raw_chars: int) -> dict | None:
    """The staged columns of a JSON-lines file (by name), or None.

    ``data``: the file's bytes, decompressed, BOM removed. Every non-blank line becomes
    a row as the row-by-row parser makes it: ``invalid_json`` or ``not_an_object`` in
    ``_parse_error``, keys outside ``known`` as JSON in ``_rescued``. Types may differ
    between lines (a revenue sent as text, then as a number): Spark's from_json types
    them later. None (row by row) for a file that is not UTF-8 or has a line over
    ``max_raw_chars``: those rows keep their text with replacements or truncated.
    """
    numbers, kept, errors, rescued = [], [], {}, {}
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        row = len(kept)
        numbers.append(number)
        kept.append(line.rstrip(b"\r"))
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            errors[row] = "invalid_json"
            continue
        if type(record) is not dict:
            errors[row] = "not_an_object"
        elif not known.issuperset(record):
            extra = {key: value for key, value in record.items() if key not in known}
            rescued[row] = orjson.dumps(extra).decode()
    try:
        raw = pa.array(kept, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return None  # not UTF-8: the row-by-row parser keeps the line with replacements
    if len(raw) and pc.max(pc.utf8_length(raw)).as_py() > max_raw_chars:
        return None
    columns = {"_line_no": pa.array(numbers, pa.int64()), "_raw": raw}
    for name, sparse in (("_parse_error", errors), ("_rescued", rescued)):
        if sparse:
            columns[name] = pa.array([sparse.get(i) for i in range(len(kept))], pa.string())
    return columns
