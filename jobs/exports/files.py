"""Single-file CSV/Parquet output from a DataFrame, and file checksums.

Used by the segment exports and by ``cdp sql --out``. The segment exports use
:func:`write_sorted_file`: the same bytes for the same rows, whatever order the
engine produced them in (downstream tools compare the manifest's SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import itertools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dates_as_text(df: DataFrame) -> DataFrame:
    """``df`` with every date column as its ISO text (``yyyy-MM-dd``), as a CSV holds it.

    What every engine's CSV writer would write, done before the write: Sail's cluster
    mode (0.7.2) writes date values to CSV as empty fields (docs/scaling.md).
    """
    dates = [f.name for f in df.schema.fields if isinstance(f.dataType, DateType)]
    if not dates:  # a Connect client refuses withColumns of nothing
        return df
    return df.withColumns({name: F.col(name).cast("string") for name in dates})


def write_single_file(df: DataFrame, fmt: str, target: Path, scratch: Path) -> None:
    """Write ``df`` as exactly one ``target`` file (CSV with header, or Parquet).

    The engine writes a folder of data files (how many is its business: Sail may write
    several even for one partition, and does not keep a sort order on write); they are
    then concatenated into one file by streaming, never holding the data in memory.
    Row order in the files is not significant.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    out = scratch / f"{target.name}.d"
    if fmt == "csv":
        writer = dates_as_text(df).coalesce(1).write.mode("overwrite")
        writer.option("header", True).csv(str(out))
        _concat_csv(part_files(out), target, df.columns)
    else:
        df.coalesce(1).write.mode("overwrite").parquet(str(out))
        _concat_parquet(part_files(out), target, to_arrow_schema(df.schema))
    shutil.rmtree(out, ignore_errors=True)


def part_files(folder: Path) -> list[Path]:
    """The data files an engine wrote into ``folder``, sorted by name; none if it is absent.

    Spark names data files part-*, Sail <random>_<n>.<ext>; neither starts with _ or .
    (_SUCCESS, .crc). Sail writes no folder at all for an empty DataFrame, and neither
    engine writes a partition folder for a value without rows.
    """
    return sorted(
        p
        for p in (folder.iterdir() if folder.is_dir() else ())
        if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")
    )


def sorted_file_from_parts(folder: Path, fmt: str, target: Path, schema: pa.Schema) -> None:
    """One sorted, byte-stable ``target`` from the parts of one partition ``folder``.

    For the files of a partitioned write (``partitionBy``), one folder per file: the
    same result as :func:`write_sorted_file` on that partition's rows. ``schema`` is the
    file's: Parquet keeps only its columns (the write may hold more) and an absent
    folder (no rows) gives an empty file of that schema; CSV parts already hold exactly
    its columns (the header when there are no rows).
    """
    if fmt == "csv":
        _concat_csv(part_files(folder), target, schema.names)
        sort_csv_lines(target)
    else:
        _concat_parquet(part_files(folder), target, schema, columns=schema.names)
        sort_parquet(target)


def _concat_csv(parts: list[Path], target: Path, columns: list[str]) -> None:
    """One CSV from part files that each start with the same header line."""
    header_done = False
    with open(target, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                header = src.readline()
                if not header:
                    continue
                if not header_done:
                    dst.write(header if header.endswith(b"\n") else header + b"\n")
                    header_done = True
                shutil.copyfileobj(src, dst, 1 << 20)
        if not header_done:
            dst.write((",".join(columns) + "\n").encode("utf-8"))


def _concat_parquet(
    parts: list[Path], target: Path, empty: pa.Schema, columns: list[str] | None = None
) -> None:
    """One Parquet file from part files, batch by batch, with only ``columns`` (None: all).

    The schema is the first part's as written by the engine; ``empty`` when there is none.
    """
    import pyarrow.parquet as pq

    if not parts:
        pq.write_table(pa.Table.from_batches([], empty), target)
        return
    first = pq.ParquetFile(parts[0]).schema_arrow
    if columns is not None:
        first = pa.schema([first.field(c) for c in columns])
    with pq.ParquetWriter(target, first) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65536):
                batch = batch.select(first.names) if columns is not None else batch
                writer.write_batch(batch.cast(first) if batch.schema != first else batch)


# Rows per Parquet row group of a sorted file: a fixed layout, whatever the engine wrote.
ROW_GROUP_ROWS = 128 * 1024
# Lines sorted in memory at once when sorting a CSV file (longer files: merge of runs).
SORT_CHUNK_LINES = 500_000


def write_sorted_file(df: DataFrame, fmt: str, target: Path, scratch: Path) -> None:
    """Like :func:`write_single_file`, with the rows in a defined order and byte-stable output.

    Parquet: rows sorted by every column in column order (an export's first column is
    its key), one file written by Arrow with fixed row groups and no engine metadata
    (held in memory: an audience is one narrow row per member). CSV: the header, then
    the data lines sorted as bytes (export values hold no line breaks), by an external
    merge sort, so memory stays bounded. Two runs over the same rows write the same bytes.
    """
    write_single_file(df, fmt, target, scratch)
    if fmt == "csv":
        sort_csv_lines(target)
    else:
        sort_parquet(target)


def sort_parquet(path: Path) -> None:
    """Rewrite one Parquet file sorted by all its (sortable) columns, fixed row groups.

    Nothing of the engine that wrote the parts: no metadata on the file or its fields
    (Sail marks some fields ``SPARK::metadata::json`` depending on the plan), and every
    column nullable (Sail keeps NOT NULL where Spark reads files as nullable), so both
    engines write the same bytes for the same rows.
    """
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    table = table.cast(pa.schema([pa.field(f.name, f.type) for f in table.schema]))
    keys = [(f.name, "ascending") for f in table.schema if not pa.types.is_nested(f.type)]
    if keys and table.num_rows > 1:
        table = table.sort_by(keys)
    tmp = path.with_name(f".{path.name}.sorted")
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
    tmp.replace(path)


def sort_csv_lines(path: Path) -> None:
    """Sort the data lines of a CSV file (header kept first) as bytes, in bounded memory."""
    with open(path, "rb") as src:
        header = src.readline()
        runs: list[Path] = []
        work = Path(tempfile.mkdtemp(prefix=".sort-", dir=path.parent))
        try:
            for chunk in _sorted_chunks(src):
                run = work / f"run-{len(runs):05d}"
                run.write_bytes(b"".join(chunk))
                runs.append(run)
            tmp = path.with_name(f".{path.name}.sorted")
            with open(tmp, "wb") as dst:
                dst.write(header)
                files = [open(r, "rb") for r in runs]  # noqa: SIM115 - closed below
                try:
                    dst.writelines(heapq.merge(*files))
                finally:
                    for f in files:
                        f.close()
            tmp.replace(path)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _sorted_chunks(src) -> Iterator[list[bytes]]:
    """Sorted runs of at most SORT_CHUNK_LINES lines, each ending with a newline."""
    lines = (ln if ln.endswith(b"\n") else ln + b"\n" for ln in src)
    while chunk := list(itertools.islice(lines, SORT_CHUNK_LINES)):
        yield sorted(chunk)


# ---- publishing an export folder ------------------------------------------------------


def previous_export(root: Path, as_of: dt.date) -> tuple[dt.date, Path] | None:
    """The latest published export (``_SUCCESS`` present) dated before ``as_of``."""
    if not root.exists():
        return None
    best = None
    for p in root.iterdir():
        try:
            day = dt.date.fromisoformat(p.name)
        except ValueError:
            continue
        if day < as_of and (p / "_SUCCESS").exists() and (best is None or day > best[0]):
            best = (day, p)
    return best


def publish(tmp: Path, target: Path) -> None:
    """Swap ``tmp`` into ``target``: rename, then ``_SUCCESS``; the old one goes last.

    A rename within one folder is atomic; the old folder is only moved aside for the
    instant between two renames and put back if the second one fails.
    """
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        (target / "_SUCCESS").unlink(missing_ok=True)  # readers: being replaced
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
            (target / "_SUCCESS").write_text("")
        raise
    (target / "_SUCCESS").write_text("")
    if old is not None:
        # Keep the run report of this date if the report step has not rewritten it yet.
        report = old / "report.html"
        if report.exists() and not (target / "report.html").exists():
            os.replace(report, target / "report.html")
        shutil.rmtree(old, ignore_errors=True)


# Folders a dead export run leaves next to the published ones (see publish).
_TMP_DIR = re.compile(r"^\.tmp-(\d{4}-\d{2}-\d{2})-[0-9a-f]{12}$")
_OLD_DIR = re.compile(r"^\.old-(\d{4}-\d{2}-\d{2})-[0-9a-f]{8}$")


def remove_dead_run_folders(root: Path) -> list[str]:
    """Remove what a killed export run left under ``root``; the names removed.

    Only folders with the export step's own temporary names: ``.tmp-<date>-<id>``
    (partial files of a run that died before publishing) and ``.old-<date>-<id>``
    (the previous export, moved aside for the instant of the swap: put back when
    the date's folder is missing, else deleted). The caller holds the lake's lock,
    so no live run owns them.
    """
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for p in sorted(root.iterdir()):
        tmp, old = _TMP_DIR.match(p.name), _OLD_DIR.match(p.name)
        if not p.is_dir() or not (tmp or old):
            continue
        if old and not (root / old.group(1)).exists():
            p.replace(root / old.group(1))
            (root / old.group(1) / "_SUCCESS").write_text("")
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed
