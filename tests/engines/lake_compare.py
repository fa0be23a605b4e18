"""Compare two lakes (and two exports folders) row by row, independently of any engine.

Both sides are read with delta-rs/pyarrow, never with the engines under test, so a
reader's quirk cannot hide a writer's difference. Rows are compared as multisets
(order is not significant in a table) after :func:`normalise`.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

# Columns that say *when* or *in which run* something was written, not what: the two
# engines run the same scenario at different moments under different run ids.
#   run_id, _run_id      the pipeline run that wrote the row (a fresh id per `cdp run`)
#   _ingested_at         when ingest stamped the row (current_timestamp of that run)
#   ingested_at          when the ingest manifest recorded the file (same)
#   validated_at         when the quality step ran its Great Expectations suite
RUN_SPECIFIC_COLUMNS = frozenset(
    {"run_id", "_run_id", "_ingested_at", "ingested_at", "validated_at"}
)

# Tables that record the runs themselves, not data: nothing engine-independent to compare.
#   meta/runs                 one row per step run: timings, start and finish times
#   meta/identity_state       the incremental state's ``detail`` JSON: step timings, and
#   meta/silver_orders_state  per-date digests made of each date's first/last _ingested_at
RUN_LOG_TABLES = frozenset({"meta/runs", "meta/identity_state", "meta/silver_orders_state"})

# Significant digits kept of a double: sums taken in another order differ in the last bits.
FLOAT_DIGITS = 12


def normalise(value: object) -> object:
    """A comparable, hashable form of one cell: doubles rounded to FLOAT_DIGITS
    significant digits, maps as sorted item tuples, lists as tuples."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value) or value == 0:
            return value
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, dict):
        return tuple(sorted((k, normalise(v)) for k, v in value.items()))
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):  # a map read by pyarrow: (key, value) pairs
            return tuple(sorted((k, normalise(v)) for k, v in value))
        return tuple(normalise(v) for v in value)
    if isinstance(value, Decimal | dt.date | dt.datetime | str | int | bool) or value is None:
        return value
    return repr(value)


def table_rows(lake: Path, name: str) -> tuple[list[str], Counter]:
    """(compared columns, multiset of normalised rows) of one Delta table."""
    table = DeltaTable(str(Path(lake) / name)).to_pyarrow_table()
    columns = sorted(c for c in table.column_names if c not in RUN_SPECIFIC_COLUMNS)
    data = table.select(columns).to_pylist()
    return columns, Counter(tuple(normalise(r[c]) for c in columns) for r in data)


def lake_tables(lake: Path) -> set[str]:
    return {f"{p.parent.parent.name}/{p.parent.name}" for p in Path(lake).glob("*/*/_delta_log")}


def _describe(name: str, columns: list[str], left: Counter, right: Counter) -> list[str]:
    only_left, only_right = left - right, right - left
    if not only_left and not only_right:
        return []
    lines = [
        f"{name}: {sum(left.values())} vs {sum(right.values())} rows, "
        f"{sum(only_left.values())} only in the first, {sum(only_right.values())} only in the second"
    ]
    for tag, rows in (("<", only_left), (">", only_right)):
        for row in sorted(rows, key=repr)[:3]:
            lines.append(
                f"  {tag} " + ", ".join(f"{c}={v!r}" for c, v in zip(columns, row, strict=True))
            )
    return lines


def compare_lakes(first: Path, second: Path) -> list[str]:
    """Every difference between two lakes (empty when they hold the same rows)."""
    problems = []
    names_first, names_second = lake_tables(first), lake_tables(second)
    if names_first != names_second:
        problems.append(
            f"tables differ: only in the first {sorted(names_first - names_second)}, "
            f"only in the second {sorted(names_second - names_first)}"
        )
    for name in sorted((names_first & names_second) - RUN_LOG_TABLES):
        cols_first, rows_first = table_rows(first, name)
        cols_second, rows_second = table_rows(second, name)
        if cols_first != cols_second:
            problems.append(f"{name}: columns differ: {cols_first} vs {cols_second}")
            continue
        problems += _describe(name, cols_first, rows_first, rows_second)
    return problems


def export_rows(path: Path) -> tuple[list[str], Counter]:
    """(columns, multiset of rows) of one exported CSV or Parquet file."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        columns = table.column_names
        return columns, Counter(tuple(normalise(r[c]) for c in columns) for r in table.to_pylist())
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        columns = next(reader, [])
        return columns, Counter(tuple(r) for r in reader)


def compare_exports(first: Path, second: Path) -> list[str]:
    """Every difference between the data files of two exports folders.

    Only the data files (CSV, Parquet) are compared, by rows: manifests carry
    checksums of files whose row order is the engine's business, and the time they
    were written.
    """

    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for p in Path(root).rglob("*")
            if p.is_file() and p.suffix in (".csv", ".parquet")
        }

    problems = []
    files_first, files_second = files(first), files(second)
    if files_first != files_second:
        problems.append(
            f"export files differ: only in the first {sorted(files_first - files_second)}, "
            f"only in the second {sorted(files_second - files_first)}"
        )
    for rel in sorted(files_first & files_second):
        cols_first, rows_first = export_rows(Path(first) / rel)
        cols_second, rows_second = export_rows(Path(second) / rel)
        if cols_first != cols_second:
            problems.append(f"{rel}: columns differ: {cols_first} vs {cols_second}")
            continue
        problems += _describe(rel, cols_first, rows_first, rows_second)
    return problems
