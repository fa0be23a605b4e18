"""Column-wise parsing of landing files (the fast path of jobs.ingest.parse).

Most nights every CSV file is well formed: one record per physical line, no quoting,
the expected columns. Such a file does not need the row-by-row parser: its lines are
split and trimmed column-wise with pyarrow compute, giving the very same staged rows
(``_line_no``, ``_raw``, ``_fields``) at C speed. :func:`csv_columns` returns None the
moment a file is anything but plain (quotes, a lone CR, a blank line inside, a wrong
field count, extra or missing columns, an over-long line): the row-by-row parser then
takes the whole file, so every case it handles stays exactly as it is.

JSON lines are checked line by line with orjson either way; :func:`jsonl_lines` keeps
the rows, broken ones included, as Arrow arrays instead of Python lists.
tests/ingest/test_fast_parse.py proves both paths give the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# A file's lines are split and trimmed this many bytes at a time: every step copies
# what it works on, and a 5M-member first loyalty export (649 MB) taken whole peaked at
# 7.6 GB in its parse worker.
PIECE_BYTES = 32 << 20


def csv_columns(
    data: bytes,
    columns: tuple[str, ...],
    required: tuple[str, ...],
    identifiers: frozenset[str],
    field_sep: str,
    max_raw_chars: int,
) -> tuple[pa.Array, pa.ChunkedArray, pa.ChunkedArray] | None:
    """(``_line_no``, ``_raw``, ``_fields``) of a plain CSV export, or None.

    ``data``: the file as UTF-8 bytes (BOM removed). ``columns``: the source's columns
    in staged order; ``identifiers``: those whose non-ASCII values are canonicalised
    (NFKC) as the row-by-row parser does. Grain of the arrays: one data line of the file.
    """
    if b'"' in data or field_sep.encode() in data or b"\x00" in data:
        return None
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends a record for the csv module
    header_end = data.find(b"\n")
    first = data if header_end < 0 else data[:header_end]
    header = _header(first.rstrip(b"\r").decode("utf-8"), columns, required)
    if header is None:
        return None
    raws, fields = [], []
    for piece in _pieces(data, len(data) if header_end < 0 else header_end + 1):
        if not piece:  # the body is one line break (no rows), or a blank line follows
            if raws:
                return None
            continue
        columns_of_piece = _piece_columns(piece, header, columns, identifiers, field_sep,
                                          max_raw_chars)  # fmt: skip
        if columns_of_piece is None:
            return None
        raws.append(columns_of_piece[0])
        fields.append(columns_of_piece[1])
    rows = sum(len(r) for r in raws)
    line_no = pa.array(np.arange(2, rows + 2, dtype=np.int64))
    return line_no, pa.chunked_array(raws, pa.string()), pa.chunked_array(fields, pa.string())


def _pieces(data: bytes, start: int) -> Iterator[bytes]:
    """``data[start:]`` in pieces of about PIECE_BYTES, each cut at a line end, without
    that line break (LF or CRLF), LFs inside for CRLFs; the file's last line break is
    dropped."""
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


def _piece_columns(
    piece: bytes,
    header: list[str],
    columns: tuple[str, ...],
    identifiers: frozenset[str],
    field_sep: str,
    max_raw_chars: int,
) -> tuple[pa.Array, pa.Array] | None:
    """(``_raw``, ``_fields``) of the lines of one piece (:func:`_pieces`), or None when
    one of them is not plain."""
    raw = _lines(piece)
    values = pc.split_pattern(raw, ",")
    if not _plain_lines(raw, values, len(header), max_raw_chars):
        return None
    cells = _cells(values.flatten(), header, columns, identifiers)
    return raw, pc.binary_join(_staged_rows(cells, header, columns, len(raw)), field_sep)


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
    header = [name.strip().lstrip("\ufeff").lower() for name in line.split(",")]
    known = set(columns)
    if len(set(header)) != len(header) or not known.issuperset(header):
        return None
    if not set(required).issubset(header):
        return None
    return header


def _plain_lines(raw: pa.Array, values: pa.Array, width: int, max_raw_chars: int) -> bool:
    """Every line non-empty, of ``width`` fields and at most ``max_raw_chars`` long."""
    lengths = pc.utf8_length(raw)
    if pc.min(lengths).as_py() == 0 or pc.max(lengths).as_py() > max_raw_chars:
        return False
    counts = pc.list_value_length(values)
    return pc.min(counts).as_py() == width and pc.max(counts).as_py() == width


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
