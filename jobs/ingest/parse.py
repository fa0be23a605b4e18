"""Parse one landing file into rows of text, without Spark.

Sail (like any engine) reads a CSV with one short row or a JSON file with one
broken line as a failure of the whole file, and it cannot decode GB18030. Real
exports need row-by-row care, so files are decoded and split here, in plain
Python, into an Arrow table of strings: the source's columns (trimmed, empty as
null) plus lineage (``_source_file``, ``_line_no``), the original text
(``_raw``), extra columns (``_rescued``, JSON) and structural problems
(``_parse_error``, ``_file_error``). Every data row of the file becomes exactly
one row here, so nothing is lost before the rules run in Spark.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import orjson
import pyarrow as pa
import yaml

from jobs.config import SCHEMAS_DIR

MAX_RAW_CHARS = 1_000_000  # a pathological 1 GB line keeps its first MB in quarantine
MAX_FIELD_CHARS = 10_000_000
csv.field_size_limit(MAX_FIELD_CHARS)
META_COLUMNS = ["_parse_error", "_file_error", "_rescued", "_raw", "_source_file", "_business_date"]


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


def arrow_schema(source: str) -> pa.Schema:
    cols = [pa.field(c, pa.string()) for c in input_spec(source).columns]
    cols += [pa.field(c, pa.string()) for c in META_COLUMNS]
    cols.append(pa.field("_line_no", pa.int64()))
    return pa.schema(cols)


@dataclass
class ParsedFile:
    source: str
    rel_path: str
    business_date: str
    size_bytes: int
    sha256: str
    encoding: str | None
    error: str | None = None
    n_rows: int = 0
    _columns: dict[str, list] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        """Append one row (missing keys are null); kept column-wise for a cheap Arrow build."""
        if not self._columns:
            self._columns = {f.name: [] for f in arrow_schema(self.source)}
        for name, values in self._columns.items():
            values.append(row.get(name))
        self.n_rows += 1

    def to_arrow(self) -> pa.Table:
        schema = arrow_schema(self.source)
        if not self._columns:
            return schema.empty_table()
        return pa.Table.from_arrays(
            [pa.array(self._columns[f.name], f.type) for f in schema], schema=schema
        )


def decode(data: bytes) -> tuple[str, str]:
    """Text and encoding of a CSV export: UTF-8 (BOM or not), else GB18030.

    Raises UnicodeDecodeError when neither fits (quarantined as unreadable).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _truncate(raw: str) -> str:
    if len(raw) <= MAX_RAW_CHARS:
        return raw
    return raw[:MAX_RAW_CHARS] + f"...[truncated {len(raw) - MAX_RAW_CHARS} chars]"


def _file_row(pf: ParsedFile, reason: str, detail: str) -> None:
    pf.error = f"{reason}: {detail}"
    pf.add(
        {
            "_parse_error": reason,
            "_raw": f"<{pf.size_bytes} bytes: {detail}>",
            "_line_no": None,
            "_source_file": pf.rel_path,
            "_business_date": pf.business_date,
        }
    )


def _records(text: str) -> Iterator[tuple[int, str, list[str] | str]]:
    """(first physical line, raw text, fields) of each CSV record; quoted newlines kept.

    A record the csv module cannot parse (a field over MAX_FIELD_CHARS, a NUL
    byte) comes back with the error message instead of fields, and parsing goes
    on with the next line, so one bad record never hides the rest of the file.
    """
    lines: list[str] = []
    source = io.StringIO(text, newline="")

    def feed() -> Iterator[str]:
        for line in source:
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


def parse_csv(pf: ParsedFile, data: bytes) -> None:
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
    records = _records(text)
    header: list[str] | None = None
    for line_no, raw, fields in records:
        if header is None:
            if isinstance(fields, str):
                _file_row(pf, "file_unreadable", f"the header line cannot be parsed ({fields})")
                return
            if not any(f.strip() for f in fields):
                continue
            header = [f.strip().lstrip("\ufeff").lower() for f in fields]
            known = set(spec.columns)
            missing = [c for c in spec.required_columns if c not in header]
            file_error = f"missing_required_column: {', '.join(missing)}" if missing else None
            if file_error:
                pf.error = file_error
            extra = [h for h in header if h not in known]
            continue
        if not isinstance(fields, str) and not any(f.strip() for f in fields):
            continue  # a blank line is not a data row
        row: dict = {
            "_line_no": line_no,
            "_raw": _truncate(raw),
            "_source_file": pf.rel_path,
            "_business_date": pf.business_date,
            "_file_error": file_error,
        }
        if isinstance(fields, str):
            row["_parse_error"] = _csv_error_reason(fields)
        elif len(fields) != len(header):
            row["_parse_error"] = "wrong_field_count"
        else:
            values = dict(zip(header, fields, strict=True))
            for c in spec.columns:
                row[c] = _clean(values.get(c))
            if extra:
                rescued = {h: values[h] for h in extra if values.get(h, "").strip()}
                row["_rescued"] = orjson.dumps(rescued).decode() if rescued else None
        pf.add(row)


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


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def parse_jsonl(pf: ParsedFile, data: bytes) -> None:
    spec = input_spec(pf.source)
    known = set(spec.columns)
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
    for i, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        raw = line.rstrip(b"\r").decode("utf-8", errors="replace")
        row: dict = {
            "_line_no": i,
            "_raw": _truncate(raw),
            "_source_file": pf.rel_path,
            "_business_date": pf.business_date,
        }
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            row["_parse_error"] = "invalid_json"
            pf.add(row)
            continue
        if not isinstance(obj, dict):
            row["_parse_error"] = "not_an_object"
            pf.add(row)
            continue
        for c in spec.columns:
            row[c] = _json_text(obj.get(c))
        rescued = {k: v for k, v in obj.items() if k not in known}
        if rescued:
            row["_rescued"] = orjson.dumps(rescued).decode()
        pf.add(row)


def parse_file(path: Path, source: str, rel_path: str, business_date: str) -> ParsedFile:
    """Read and parse one landing file (see module docstring)."""
    data = path.read_bytes()
    pf = ParsedFile(
        source=source,
        rel_path=rel_path,
        business_date=business_date,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        encoding=None,
    )
    spec = input_spec(source)
    if not spec.file_pattern.match(path.name):
        _file_row(pf, "unexpected_file_name", f"{path.name} is not named as a {source} export")
    elif spec.format == "csv":
        parse_csv(pf, data)
    else:
        parse_jsonl(pf, data)
    return pf
