"""Compare two runs of the pipeline over the same landing zone, engine against engine.

Tables are read with delta-rs (no Spark), exports as files: what is compared is what
a reader of the lake and of the exports sees.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable

LAYERS = ("silver", "gold")
# Columns that say when or in which run a row was written: they differ run to run.
RUN_COLUMNS = {
    "_ingested_at",
    "_run_id",
    "run_id",
    "ingested_at",
    "validated_at",
    "started_at",
    "finished_at",
}
# Floating sums in another order differ in the last bits (seen: a gold/member_features
# ratio 0.9316046470 on Sail vs 0.9316046466 on Spark): floats compare with this
# relative tolerance, everything else exactly.
REL_TOL = 1e-9


def tables(lake: Path, layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Every Delta table of ``layers`` under ``lake`` as ``layer/table``."""
    return sorted(
        f"{layer}/{p.parent.name}" for layer in layers for p in (lake / layer).glob("*/_delta_log")
    )


def _normal(value: object) -> object:
    """Hashable and order-free: lists as tuples, maps as sorted pairs; floats as they are."""
    if isinstance(value, list):
        return tuple(_normal(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _normal(v)) for k, v in value.items()))
    return value


def _exact_part(row: tuple) -> tuple[str, str]:
    """The row without its floats (then its floats to 6 digits): the sort key that pairs rows."""
    exact = tuple(None if isinstance(v, float) else v for v in row)
    rough = tuple(f"{v:.6g}" for v in row if isinstance(v, float))
    return repr(exact), repr(rough)


def table_rows(lake: Path, name: str) -> list[tuple]:
    """The rows of one table without the run columns, normalised and sorted."""
    data = DeltaTable(str(lake / name)).to_pyarrow_table()
    columns = sorted(c for c in data.column_names if c not in RUN_COLUMNS)
    rows = data.select(columns).to_pylist()
    # A map has no order: its entries (a list of pairs in pyarrow) are compared sorted.
    maps = {c for c in columns if pa.types.is_map(data.schema.field(c).type)}

    def value(r: dict, c: str) -> object:
        v = _normal(r[c])
        return tuple(sorted(v, key=repr)) if c in maps and v is not None else v

    return sorted((tuple(value(r, c) for c in columns) for r in rows), key=_exact_part)


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def same_rows(a: list[tuple], b: list[tuple]) -> bool:
    """Equal row for row (sorted by their exact part), floats within REL_TOL."""
    return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))


def member_ids(lake: Path) -> set[str]:
    data = DeltaTable(str(lake / "silver/members")).to_pyarrow_table(columns=["member_id"])
    return set(data.column("member_id").to_pylist())


def export_rows(exports: Path) -> dict[str, list[str]]:
    """``date/segment.csv`` -> its sorted lines, and each manifest's row counts."""
    out: dict[str, list[str]] = {}
    for csv in sorted(exports.glob("*/*.csv")):
        out[f"{csv.parent.name}/{csv.name}"] = sorted(csv.read_text(encoding="utf-8").splitlines())
    for manifest in sorted(exports.glob("*/manifest.json")):
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        counts = sorted(f"{f['path']}: {f['rows']}" for f in files)
        out[f"{manifest.parent.name}/manifest.json"] = counts
    return out


def differences(reference: Path, other: Path) -> list[str]:
    """What differs between two lakes' silver and gold tables (empty when none)."""
    found = []
    names = tables(reference)
    if names != tables(other):
        found.append(f"tables differ: {names} vs {tables(other)}")
    for name in names:
        if not (other / name / "_delta_log").exists():
            continue
        a, b = table_rows(reference, name), table_rows(other, name)
        if not same_rows(a, b):
            only_a = [r for r in a if r not in b][:2]
            only_b = [r for r in b if r not in a][:2]
            found.append(
                f"{name}: {len(a)} vs {len(b)} rows; only in reference {only_a}; only in other {only_b}"
            )
    return found
