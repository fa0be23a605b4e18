"""Compare two lakes (and two exports folders) row by row, independently of any engine.

Both sides are read with delta-rs/pyarrow, never with the engines under test, so a
reader's quirk cannot hide a writer's difference. A table's rows are compared as a
multiset (order is not significant in a table): equal row for row, except that a
double may differ from its twin by a relative 1e-9 (a sum taken in another order
differs in the last bits; seen: a gold/member_features ratio 0.9316046470 on Sail vs
0.9316046466 on Spark). Maps compare as sorted entries, lists in order.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from jobs.lake import delta_arrow

# Columns that say *when* or *in which run* something was written, not what: the two
# engines run the same scenario at different moments under different run ids.
#   run_id, _run_id      the pipeline run that wrote the row (a fresh id per `cdp run`)
#   _ingested_at         when ingest stamped the row (current_timestamp of that run)
#   ingested_at          when the ingest manifest recorded the file (same)
#   validated_at         when the quality step ran its Great Expectations suite
#   started_at, finished_at  when a step ran
#   request_id, added_at  which erasure request (`cdp forget`, one per engine: an id made of
#                        its time and a random part) put a hash on the suppression list, when
RUN_SPECIFIC_COLUMNS = frozenset(
    {
        "request_id",
        "added_at",
        "run_id",
        "_run_id",
        "_ingested_at",
        "ingested_at",
        "validated_at",
        "started_at",
        "finished_at",
    }
)

# Tables that record the runs themselves, not data: nothing engine-independent to compare.
#   meta/runs                 one row per step run: timings, start and finish times
#   meta/identity_state       the incremental state's ``detail`` JSON: step timings, and
#   meta/silver_orders_state  per-date digests made of each date's first/last _ingested_at
#   meta/points_ledger_state  the same digests for bronze/loyalty_ledger
RUN_LOG_TABLES = frozenset(
    {"meta/runs", "meta/identity_state", "meta/silver_orders_state", "meta/points_ledger_state"}
)

REL_TOL = 1e-9

Row = tuple


def _normal(value: object, is_map: bool = False) -> object:
    """Hashable and order-free where order means nothing: lists as tuples, maps (pyarrow
    gives a list of pairs, or a dict for a struct) as sorted pairs."""
    if isinstance(value, dict):
        return tuple(sorted((k, _normal(v)) for k, v in value.items()))
    if isinstance(value, list):
        items = tuple(_normal(v) for v in value)
        return tuple(sorted(items, key=repr)) if is_map else items
    return value


def _exact(value: object) -> object:
    """The value with every double blanked: what must match exactly."""
    if isinstance(value, float):
        return None
    if isinstance(value, tuple):
        return tuple(_exact(v) for v in value)
    return value


def _floats(value: object) -> list[float]:
    """Every double of the value, in order."""
    if isinstance(value, float):
        return [value]
    if isinstance(value, tuple):
        return [f for v in value for f in _floats(v)]
    return []


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=REL_TOL) or (math.isnan(x) and math.isnan(y))
        for x, y in zip(a, b, strict=True)
    )


def rows_of(data: pa.Table) -> tuple[list[str], list[Row]]:
    """(compared columns, normalised rows) of an Arrow table, run columns left out."""
    columns = sorted(c for c in data.column_names if c not in RUN_SPECIFIC_COLUMNS)
    maps = {c for c in columns if pa.types.is_map(data.schema.field(c).type)}
    return columns, [
        tuple(_normal(r[c], c in maps) for c in columns) for r in data.select(columns).to_pylist()
    ]


def table_rows(lake: Path, name: str) -> tuple[list[str], list[Row]]:
    """(compared columns, normalised rows) of one Delta table of ``lake``."""
    return rows_of(delta_arrow(str(Path(lake) / name)))


def _unmatched(first: list[Row], second: list[Row]) -> tuple[list[Row], list[Row]]:
    """Rows of each side without a twin on the other (same exact part, doubles close)."""
    groups: dict[object, tuple[list[Row], list[Row]]] = defaultdict(lambda: ([], []))
    for side, rows in enumerate((first, second)):
        for row in rows:
            groups[repr(_exact(row))][side].append(row)
    only_first: list[Row] = []
    only_second: list[Row] = []
    for left, right in groups.values():
        left.sort(key=_floats)
        right.sort(key=_floats)
        for row in left:
            twin = next((i for i, b in enumerate(right) if _close(_floats(row), _floats(b))), None)
            if twin is None:
                only_first.append(row)
            else:
                right.pop(twin)
        only_second += right
    return only_first, only_second


def describe(name: str, columns: list[str], first: list[Row], second: list[Row]) -> list[str]:
    """Nothing when the two multisets of rows match; else a count and up to 3 rows a side."""
    only_first, only_second = _unmatched(first, second)
    if not only_first and not only_second:
        return []
    lines = [
        f"{name}: {len(first)} vs {len(second)} rows, "
        f"{len(only_first)} only in the first, {len(only_second)} only in the second"
    ]
    for tag, rows in (("<", only_first), (">", only_second)):
        for row in sorted(rows, key=repr)[:3]:
            lines.append(
                f"  {tag} " + ", ".join(f"{c}={v!r}" for c, v in zip(columns, row, strict=True))
            )
    return lines


def lake_tables(lake: Path) -> set[str]:
    """Every Delta table of the lake as ``layer/table``."""
    return {f"{p.parent.parent.name}/{p.parent.name}" for p in Path(lake).glob("*/*/_delta_log")}


def compare_lakes(first: Path, second: Path) -> list[str]:
    """Every difference between two lakes' tables (empty when they hold the same rows)."""
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
        problems += describe(name, cols_first, rows_first, rows_second)
    return problems


def member_ids(lake: Path) -> set[str]:
    """The member ids of silver/members."""
    data = DeltaTable(str(Path(lake) / "silver/members")).to_pyarrow_table(columns=["member_id"])
    return set(data.column("member_id").to_pylist())


def export_file_rows(path: Path) -> tuple[list[str], list[Row]]:
    """(columns, rows) of one exported CSV or Parquet file, or a manifest's per-file row
    counts (its checksums and write time are the engine's and the moment's business)."""
    if path.suffix == ".parquet":
        return rows_of(pq.read_table(path))
    if path.suffix == ".json":
        files = json.loads(path.read_text(encoding="utf-8")).get("files", [])
        return ["path", "rows"], [(f["path"], f["rows"]) for f in files]
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        return next(reader, []), [tuple(r) for r in reader]


def _export_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in Path(root).rglob("*")
        if p.is_file() and (p.suffix in (".csv", ".parquet") or p.name == "manifest.json")
    }


def compare_exports(first: Path, second: Path) -> list[str]:
    """Every difference between two exports folders: data files by rows, manifests by
    their per-file row counts."""
    problems = []
    files_first, files_second = _export_files(first), _export_files(second)
    if files_first != files_second:
        problems.append(
            f"export files differ: only in the first {sorted(files_first - files_second)}, "
            f"only in the second {sorted(files_second - files_first)}"
        )
    for rel in sorted(files_first & files_second):
        cols_first, rows_first = export_file_rows(Path(first) / rel)
        cols_second, rows_second = export_file_rows(Path(second) / rel)
        if cols_first != cols_second:
            problems.append(f"{rel}: columns differ: {cols_first} vs {cols_second}")
            continue
        problems += describe(rel, cols_first, rows_first, rows_second)
    return problems


def compared_rows(lake: Path) -> dict[str, int]:
    """Rows per compared table of a lake (the scope a comparison covered)."""
    return {
        name: delta_arrow(str(Path(lake) / name)).num_rows
        for name in sorted(lake_tables(lake) - RUN_LOG_TABLES)
    }
