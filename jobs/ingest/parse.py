"""Parse one landing file into rows of text, without Spark.

Sail (like any engine) reads a CSV with one short row or a JSON file with one
broken line as a failure of the whole file, and it cannot decode GB18030. Real
exports need row-by-row care, so files are decoded and split here, in plain
Python, into a narrow Arrow table: lineage (``_source_file``, ``_line_no``),
the original text (``_raw``), structural problems (``_parse_error``,
``_file_error``), extra columns (``_rescued``, JSON) and, for CSV, the row's
values in the source's column order joined by a unit separator (``_fields``).
Spark then expands ``_fields`` (CSV) or ``_raw`` (JSON, with ``from_json``) into
columns: keeping Python to what only Python can do (decoding, CSV quoting,
telling broken JSON from good) is what makes this fast. Every data row of the
file becomes exactly one row here, so nothing is lost before the rules run.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson
import pyarrow as pa
import yaml

from jobs.config import SCHEMAS_DIR
from jobs.identity.normalize import IDENTIFIER_COLUMNS, canonical_text
from jobs.ingest.fast_parse import csv_columns, jsonl_lines
from jobs.ingest.landing import open_no_follow

MAX_RAW_CHARS = 1_000_000  # a pathological 1 GB line keeps its first MB in quarantine
MAX_FIELD_CHARS = 10_000_000
# A physical line longer than this is cut while the file is read (its first
# MAX_RAW_CHARS bytes kept), so a 1 GB line never sits in memory whole.
MAX_LINE_BYTES = 16 << 20
FLUSH_ROWS = 65_536  # rows parsed one by one are turned into Arrow this many at a time
# Files up to this size are read whole (their longest line measured with numpy); larger
# ones, or ones with a line over MAX_LINE_BYTES, line by line.
MAX_WHOLE_FILE_BYTES = 512 << 20
_LONG_LINE_STANDIN = b"x"  # what the parsers see instead: one field / not JSON
FIELD_SEP = "\x1f"  # ASCII unit separator: joins a CSV row's values for Spark to split
csv.field_size_limit(MAX_FIELD_CHARS)

STAGED_SCHEMA = pa.schema(
    [
        pa.field("_line_no", pa.int64()),
        pa.field("_raw", pa.string()),
        pa.field("_fields", pa.string()),
        pa.field("_parse_error", pa.string()),
        pa.field("_file_error", pa.string()),
        pa.field("_rescued", pa.string()),
        pa.field("_source_file", pa.string()),
        pa.field("_business_date", pa.string()),
    ]
)


@dataclass(frozen=True)
class InputSpec:
    source: str
    format: str
    file_pattern: re.Pattern
    columns: tuple[str, ...]
    required_columns: tuple[str, ...]


@cache
def input_spec(source: str) -> InputSpec:
    spec = yaml.safe_load((SCHEMAS_DIR / "inputs.yaml").read_text(encoding="utf-8"))[source]
    return InputSpec(
        source=source,
        format=spec["format"],
        file_pattern=re.compile(spec["file_pattern"]),
        columns=tuple(spec["columns"]),
        required_columns=tuple(spec["required_columns"]),
    )


@dataclass
class ParsedFile:
    source: str
    rel_path: str
    business_date: str
    size_bytes: int
    sha256: str
    encoding: str | None
    error: str | None = None
    file_error: str | None = None
    line_no: list = field(default_factory=list)
    raw: list = field(default_factory=list)
    fields: list = field(default_factory=list)
    parse_errors: dict[int, str] = field(default_factory=dict)
    rescued: dict[int, str] = field(default_factory=dict)
    # The rows added before the lists above, as Arrow: the lists are emptied every
    # FLUSH_ROWS rows (a 5M-member first CRM export, 736 MB parsed row by row, held its
    # 4.4M rows as Python strings: 10.2 GB in its worker).
    chunks: list[pa.Table] = field(default_factory=list)
    # Lines cut for length (read_bounded): line number -> (first MB, length in bytes).
    long_lines: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    # Set by the column-wise fast path (jobs.ingest.fast_parse) instead of the lists
    # above: staged columns by name (``_line_no`` and ``_raw`` always; ``_fields``,
    # ``_parse_error``, ``_rescued`` when the file has any); the others are null.
    arrays: dict[str, pa.Array] | None = None

    @property
    def n_rows(self) -> int:
        if self.arrays is not None:
            return len(self.arrays["_line_no"])
        return sum(c.num_rows for c in self.chunks) + len(self.line_no)

    def add(
        self,
        line_no: int | None,
        raw: str,
        fields: str | None = None,
        parse_error: str | None = None,
        rescued: str | None = None,
    ) -> None:
        if line_no in self.long_lines:  # a line cut for length: its first MB, no fields
            prefix, length = self.long_lines[line_no]
            text = prefix.decode(self.encoding or "utf-8", errors="replace")
            raw, fields, parse_error, rescued = (
                f"{text}...[truncated: line of {length} bytes]", None, "line_too_long", None
            )  # fmt: skip
        i = len(self.line_no)
        self.line_no.append(line_no)
        self.raw.append(raw)
        self.fields.append(fields)
        if parse_error:
            self.parse_errors[i] = parse_error
        if rescued:
            self.rescued[i] = rescued
        if i + 1 >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        """The rows in the lists as one Arrow chunk; the lists emptied."""
        n = len(self.line_no)

        def sparse(values: dict[int, str]) -> pa.Array:
            if not values:
                return pa.nulls(n, pa.string())
            return pa.array([values.get(i) for i in range(n)], pa.string())

        self.chunks.append(
            pa.table(
                {
                    "_line_no": pa.array(self.line_no, pa.int64()),
                    "_raw": pa.array(self.raw, pa.string()),
                    "_fields": pa.array(self.fields, pa.string()),
                    "_parse_error": sparse(self.parse_errors),
                    "_rescued": sparse(self.rescued),
                }
            )
        )
        self.line_no, self.raw, self.fields = [], [], []
        self.parse_errors, self.rescued = {}, {}

    def to_arrow(self) -> pa.Table:
        """The file's staged rows (grain: one parsed row), in STAGED_SCHEMA: the fast
        path's arrays, or the rows added one by one (chunks, then the lists)."""
        if self.arrays is not None:
            columns = dict(self.arrays)
        else:
            self._flush()
            rows = pa.concat_tables(self.chunks)
            self.chunks = [rows]
            columns = {name: rows.column(name) for name in rows.column_names}
        n = len(columns["_line_no"])
        for name, value in (("_file_error", self.file_error), ("_source_file", self.rel_path),
                            ("_business_date", self.business_date)):  # fmt: skip
            columns[name] = pa.repeat(pa.scalar(value, pa.string()), n)
        return pa.Table.from_arrays(
            [columns.get(f.name, pa.nulls(n, f.type)) for f in STAGED_SCHEMA],
            schema=STAGED_SCHEMA,
        )


_IDENTIFIERS = frozenset(IDENTIFIER_COLUMNS)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")
# What GB18030 pairs look like when read as UTF-8: Latin Extended, Greek,
# Cyrillic, Hebrew, Arabic... (not the Latin-1 accents of real European names).
_MISREAD = re.compile(r"[\u0100-\u07ff]")
_SAMPLE = 1 << 20


def _cjk_share(text: str) -> float:
    """Share of the non-ASCII characters (in the first MB) that are Chinese."""
    sample = text[:_SAMPLE]
    non_ascii = len(_NON_ASCII.findall(sample))
    return len(_CJK.findall(sample)) / non_ascii if non_ascii else 1.0


def decode(data: bytes) -> tuple[str, str]:
    """Text and encoding of a CSV export: UTF-8 (BOM or not), else GB18030.

    Some GB18030 byte pairs are also valid UTF-8 (母婴 is C4B8 D3A4, which
    UTF-8 reads as "ĸӤ"), so a file that decodes as UTF-8 into such letters
    rather than Chinese is read as GB18030 when that gives Chinese. Raises
    UnicodeDecodeError when neither fits (quarantined as unreadable).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"
    share = _cjk_share(text)
    if share < 0.5 and _MISREAD.search(text[:_SAMPLE]):
        try:
            gb = data.decode("gb18030")
        except UnicodeDecodeError:
            return text, "utf-8"
        if _cjk_share(gb) > share:
            return gb, "gb18030"
    return text, "utf-8"


def _truncate(raw: str) -> str:
    if len(raw) <= MAX_RAW_CHARS:
        return raw
    return raw[:MAX_RAW_CHARS] + f"...[truncated {len(raw) - MAX_RAW_CHARS} chars]"


def _file_row(pf: ParsedFile, reason: str, detail: str) -> None:
    pf.error = f"{reason}: {detail}"
    pf.add(None, f"<{pf.size_bytes} bytes: {detail}>", parse_error=reason)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their ends, as ``io.StringIO(text, newline="")`` gives
    them (``\r\n``, ``\r`` or ``\n``), one at a time: a StringIO holds a copy of the
    text, four bytes a character (a 736 MB CRM export: 2.4 GB more)."""
    for match in _LINE.finditer(text):
        yield match.group()


def _records(text: str) -> Iterator[tuple[int, str, list[str] | str]]:
    """(first physical line, raw text, fields) of each CSV record; quoted newlines kept.

    A record the csv module cannot parse (a field over MAX_FIELD_CHARS, a NUL
    byte) comes back with the error message instead of fields, and parsing goes
    on with the next line, so one bad record never hides the rest of the file.
    """
    lines: list[str] = []

    def feed() -> Iterator[str]:
        for line in _lines(text):
            lines.append(line)
            yield line

    reader = csv.reader(feed())
    consumed = 0
    while True:
        try:
            fields: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            fields = str(exc)
        raw = "".join(lines)
        lines.clear()
        start = consumed + 1
        consumed = reader.line_num
        yield start, raw.rstrip("\r\n"), fields


def _csv_error_reason(message: str) -> str:
    return "line_too_long" if "field limit" in message else "malformed_csv"


def parse_csv(pf: ParsedFile, data: bytes, fast: bool = True) -> None:
    """Decode and parse a CSV export into ``pf`` (plain files column-wise, others row by row)."""
    spec = input_spec(pf.source)
    try:
        text, pf.encoding = decode(data)
    except UnicodeDecodeError as exc:
        _file_row(
            pf, "file_unreadable", f"neither UTF-8 nor GB18030 ({exc.reason} at byte {exc.start})"
        )
        return
    if "\x00" in text:
        _file_row(pf, "file_unreadable", "binary content (NUL bytes), not a CSV export")
        return
    if fast:
        utf8 = data[3:] if pf.encoding == "utf-8-sig" else data
        columns = csv_columns(
            utf8 if pf.encoding != "gb18030" else text.encode("utf-8"),
            spec.columns,
            spec.required_columns,
            _IDENTIFIERS,
            FIELD_SEP,
            MAX_RAW_CHARS,
        )
        if columns is not None:
            pf.arrays = columns
            return
    header: list[str] | None = None
    for line_no, raw, fields in _records(text):
        if header is None:
            if isinstance(fields, str):
                _file_row(pf, "file_unreadable", f"the header line cannot be parsed ({fields})")
                return
            if not any(f.strip() for f in fields):
                continue
            header = [f.strip().lstrip("\ufeff").lower() for f in fields]
            width = len(header)
            position = {h: i for i, h in enumerate(header)}
            index = [position.get(c) for c in spec.columns]
            identifiers = {i for i, c in enumerate(spec.columns) if c in IDENTIFIER_COLUMNS}
            missing = [c for c in spec.required_columns if c not in position]
            if missing:
                pf.file_error = pf.error = f"missing_required_column: {', '.join(missing)}"
            extra = [(i, h) for i, h in enumerate(header) if h not in spec.columns]
            continue
        if isinstance(fields, str):
            pf.add(line_no, _truncate(raw), parse_error=_csv_error_reason(fields))
        elif len(fields) != width:
            if not any(f.strip() for f in fields):
                continue  # a blank line is not a data row
            pf.add(line_no, _truncate(raw), parse_error="wrong_field_count")
        elif FIELD_SEP in raw:
            pf.add(line_no, _truncate(raw), parse_error="malformed_csv")
        else:
            values = ["" if i is None else fields[i].strip() for i in index]
            for k in identifiers:
                if not values[k].isascii():  # ASCII is already canonical: skip the work
                    values[k] = canonical_text(values[k]).strip()
            joined = FIELD_SEP.join(values)
            rescued = None
            if extra:
                found = {h: fields[i] for i, h in extra if fields[i].strip()}
                rescued = orjson.dumps(found).decode() if found else None
            pf.add(line_no, _truncate(raw), joined, rescued=rescued)


def gunzip(data: bytes) -> bytes:
    """Decompress every gzip member; a truncated stream or a bad CRC raises (no partial file)."""
    out = []
    while data:
        d = zlib.decompressobj(wbits=31)
        out.append(d.decompress(data))
        if not d.eof:
            raise EOFError("truncated gzip stream")
        data = d.unused_data.lstrip(b"\0")
    return b"".join(out)


def parse_jsonl(pf: ParsedFile, data: bytes, fast: bool = True) -> None:
    """Parse a JSON-lines export into ``pf`` (plain files by pyarrow, others line by line)."""
    spec = input_spec(pf.source)
    if pf.rel_path.endswith(".gz"):
        try:
            data = gunzip(data)
        except (EOFError, zlib.error) as exc:
            _file_row(pf, "file_unreadable", f"not a readable gzip file ({exc})")
            return
    pf.encoding = "utf-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        pf.encoding = "utf-8-sig"
    known = set(spec.columns)
    if fast:
        pf.arrays = jsonl_lines(bytes(data), frozenset(known), MAX_RAW_CHARS)
        if pf.arrays is not None:
            return
    for i, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        raw = line.rstrip(b"\r").decode("utf-8", errors="replace")
        if len(raw) > MAX_RAW_CHARS:
            pf.add(i, _truncate(raw), parse_error="line_too_long")
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            pf.add(i, raw, parse_error="invalid_json")
            continue
        if not isinstance(obj, dict):
            pf.add(i, raw, parse_error="not_an_object")
            continue
        rescued = None
        if not known.issuperset(obj):
            rescued = orjson.dumps({k: v for k, v in obj.items() if k not in known}).decode()
        pf.add(i, raw, rescued=rescued)


def read_bounded(path: Path) -> tuple[bytes | bytearray, dict[int, tuple[bytes, int]], int, str]:
    """The file's bytes with every physical line over MAX_LINE_BYTES replaced by a stand-in.

    Returns (data, {line number: (first MAX_RAW_CHARS bytes, length)}, size, SHA-256
    of the real file). Files no larger than MAX_LINE_BYTES are read in one go.
    """
    with open_no_follow(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= MAX_LINE_BYTES:
            data = f.read()
            return data, {}, len(data), hashlib.sha256(data).hexdigest()
        if size <= MAX_WHOLE_FILE_BYTES:
            data = f.read()
            if _longest_line(data) < MAX_LINE_BYTES:
                return data, {}, len(data), hashlib.sha256(data).hexdigest()
            del data
            f.seek(0)
        return _read_long_lines(f)


def _longest_line(data: bytes) -> int:
    """Length in bytes of the longest line of ``data``, line break not counted."""
    breaks = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    bounds = np.concatenate(([-1], breaks, [len(data)]))
    return int(np.diff(bounds).max()) - 1


def _read_long_lines(f: BinaryIO) -> tuple[bytearray, dict[int, tuple[bytes, int]], int, str]:
    """:func:`read_bounded` for a file larger than MAX_LINE_BYTES, line by line."""
    h, buf, long_lines, size, line_no = hashlib.sha256(), bytearray(), {}, 0, 0
    while chunk := f.readline(MAX_LINE_BYTES):
        h.update(chunk)
        size += len(chunk)
        line_no += 1
        if len(chunk) < MAX_LINE_BYTES or chunk.endswith(b"\n"):
            buf += chunk
            continue
        prefix, length, ended = chunk[:MAX_RAW_CHARS], len(chunk), False
        while more := f.readline(1 << 20):
            h.update(more)
            size += len(more)
            length += len(more)
            if more.endswith(b"\n"):
                ended = True
                break
        long_lines[line_no] = (prefix, length)
        buf += _LONG_LINE_STANDIN + (b"\n" if ended else b"")
    return buf, long_lines, size, h.hexdigest()


def parse_file(
    path: Path, source: str, rel_path: str, business_date: str, fast: bool = True
) -> ParsedFile:
    """Read and parse one landing file (see module docstring).

    ``fast``: try the column-wise path (jobs.ingest.fast_parse) first; a file it does
    not take, or one with a line cut for length, goes row by row. A file that cannot be opened (no permission, a symbolic link swapped in
    after discovery: never followed) becomes one ``file_unreadable`` row.
    """
    try:
        data, long_lines, size, digest = read_bounded(path)
    except OSError as exc:
        pf = ParsedFile(source, rel_path, business_date, 0, "", None)
        _file_row(pf, "file_unreadable", f"cannot be opened ({exc.strerror or exc})")
        return pf
    pf = ParsedFile(
        source=source,
        rel_path=rel_path,
        business_date=business_date,
        size_bytes=size,
        sha256=digest,
        encoding=None,
        long_lines=long_lines,  # their rows become line_too_long rows (ParsedFile.add)
    )
    spec = input_spec(source)
    if not spec.file_pattern.match(path.name):
        _file_row(pf, "unexpected_file_name", f"{path.name} is not named as a {source} export")
    elif spec.format == "csv":
        parse_csv(pf, data, fast and not long_lines)
    else:
        parse_jsonl(pf, data, fast and not long_lines)
    return pf


def staged_row(
    source: str,
    values: dict,
    line_no: int,
    source_file: str,
    business_date: str,
    parse_error: str | None = None,
) -> dict:
    """One staged row as the parser would write it, from column values (for tests)."""
    spec = input_spec(source)
    if spec.format == "csv":
        fields = (
            None if parse_error else FIELD_SEP.join(str(values.get(c) or "") for c in spec.columns)
        )
        raw = ",".join(str(values.get(c) or "") for c in spec.columns)
    else:
        fields = None
        raw = (
            "{broken"
            if parse_error
            else orjson.dumps({k: v for k, v in values.items() if v is not None}).decode()
        )
    return {
        "_line_no": line_no,
        "_raw": raw,
        "_fields": fields,
        "_parse_error": parse_error,
        "_file_error": None,
        "_rescued": None,
        "_source_file": source_file,
        "_business_date": business_date,
    }
