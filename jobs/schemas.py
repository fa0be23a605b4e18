"""Table schemas from `schemas/<layer>.yaml`, as Spark StructTypes.

A table is named ``layer/table`` (``bronze/pos_lines``). Every quarantine table
uses the ``_default`` entry of ``schemas/quarantine.yaml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import yaml
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import SCHEMAS_DIR

_SIMPLE: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` outside angle brackets and parentheses (the comma
    of a ``decimal(p,s)`` field inside a struct)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "<(") - (ch in ">)")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_type(text: str) -> T.DataType:
    """Parse the small type language of schemas/: simple names, decimal(p,s), array<>,
    map<,> and struct<name:type,...>."""
    t = text.strip().lower()
    if t in _SIMPLE:
        return _SIMPLE[t]
    m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t)
    if m:
        return T.DecimalType(int(m.group(1)), int(m.group(2)))
    if t.startswith("array<") and t.endswith(">"):
        return T.ArrayType(parse_type(t[6:-1]))
    if t.startswith("map<") and t.endswith(">"):
        parts = _top_level_split(t[4:-1], ",")
        if len(parts) == 2:
            return T.MapType(parse_type(parts[0]), parse_type(parts[1]))
    if t.startswith("struct<") and t.endswith(">"):
        fields = [_top_level_split(f, ":") for f in _top_level_split(t[7:-1], ",")]
        if all(len(f) == 2 for f in fields):
            return T.StructType(
                [T.StructField(n.strip(), parse_type(ft), True) for n, ft in fields]
            )
    raise ValueError(f"unknown type in schemas/: {text!r}")


@dataclass(frozen=True)
class TableSchema:
    name: str
    grain: str
    keys: tuple[str, ...]
    partition_by: tuple[str, ...]
    struct: T.StructType
    # MERGE, UPDATE and DELETE mark the rows they replace in a deletion vector instead of
    # rewriting every file holding one (jobs.lake.DELETION_VECTORS).
    deletion_vectors: bool = False

    @property
    def columns(self) -> list[str]:
        return [f.name for f in self.struct.fields]


@cache
def _layer(layer: str) -> dict:
    path = SCHEMAS_DIR / f"{layer}.yaml"
    if not path.exists():
        raise KeyError(f"no schema file for layer {layer!r} ({path})")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def table_schema(name: str) -> TableSchema:
    """Schema of ``layer/table``."""
    layer, _, table = name.partition("/")
    spec = _layer(layer)
    entry = spec.get(table) or spec.get("_default")
    if entry is None:
        raise KeyError(f"table {name!r} is not declared in schemas/{layer}.yaml")
    fields = [T.StructField(col, parse_type(typ), True) for col, typ in entry["columns"].items()]
    return TableSchema(
        name=name,
        grain=entry.get("grain", ""),
        keys=tuple(entry.get("keys", [])),
        partition_by=tuple(entry.get("partition_by", [])),
        struct=T.StructType(fields),
        deletion_vectors=bool(entry.get("deletion_vectors", False)),
    )


def conform(df: DataFrame, name: str, extra: bool = False) -> DataFrame:
    """Select the declared columns of ``name`` in order, cast to their types.

    A declared column missing from ``df`` is an error (a bug in the job, not in
    the data). With ``extra=True`` undeclared columns are kept at the end.
    """
    schema = table_schema(name)
    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}")
    cols: list[Column] = [
        F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.struct.fields
    ]
    if extra:
        cols += [F.col(c) for c in df.columns if c not in schema.columns]
    return df.select(*cols)
