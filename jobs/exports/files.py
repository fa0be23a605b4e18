"""Single-file CSV/Parquet output from a DataFrame, and file checksums.

Used by the segment exports and by ``cdp sql --out``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import types as T


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_single_file(df: DataFrame, fmt: str, target: Path, scratch: Path) -> None:
    """Write ``df`` as exactly one ``target`` file (CSV with header, or Parquet).

    The engine writes a folder of data files (how many is its business: Sail may write
    several even for one partition, and does not keep a sort order on write); they are
    then concatenated into one file by streaming, never holding the data in memory.
    Row order in the files is not significant.
    """
    out = scratch / f"{target.name}.d"
    writer = df.coalesce(1).write.mode("overwrite")
    if fmt == "csv":
        writer.option("header", True).csv(str(out))
    else:
        writer.parquet(str(out))
    # Spark names data files part-*, Sail <random>_<n>.<ext>; neither starts with _ or .
    # (_SUCCESS, .crc). Sail writes no folder at all for an empty DataFrame.
    parts = sorted(
        p
        for p in (out.iterdir() if out.exists() else ())
        if p.is_file() and not p.name.startswith(("_", ".")) and not p.name.endswith(".crc")
    )
    if fmt == "csv":
        _concat_csv(parts, target, df.columns)
    else:
        _concat_parquet(parts, target, df.schema)
    shutil.rmtree(out, ignore_errors=True)


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


def _concat_parquet(parts: list[Path], target: Path, schema: T.StructType) -> None:
    """One Parquet file from part files, batch by batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        from pyspark.sql.pandas.types import to_arrow_schema

        pq.write_table(pa.Table.from_batches([], to_arrow_schema(schema)), target)
        return
    first = pq.ParquetFile(parts[0]).schema_arrow
    with pq.ParquetWriter(target, first) as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65536):
                writer.write_batch(batch.cast(first) if batch.schema != first else batch)
