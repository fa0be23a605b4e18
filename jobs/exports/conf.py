"""conf/segments.yaml: the segments to export and the rules of reach, validated when loaded.

Used by the export step (jobs.exports.segments, which re-exports these names), by
gold/member_channels (the reach rules) and by ``cdp check`` (every ``where`` analysed
against the segment view's schema, no data read).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import CONF_DIR, ConfigError, StrictModel, load_model
from jobs.gold.value_view import value_fields
from jobs.schemas import table_schema

SEGMENTS_FILE = "segments.yaml"
Channel = Literal["sms", "email", "push", "ads", "preferred"]

# Columns of silver/members that must not reach the segment view (hashes are keyed
# HMACs meant for joins, masked values are for display in exports only).
MEMBER_PRIVATE = re.compile(r".*_(hash|masked)$")


class Segment(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = ""
    channel: Channel
    where: str = Field(min_length=1)
    # Lower goes first when the frequency cap must choose (ties: order in the file).
    priority: int = Field(100, ge=0)

    @field_validator("where")
    @classmethod
    def _one_expression(cls, value: str) -> str:
        if ";" in value:
            raise ValueError("must be a single SQL expression (no ';')")
        return value.strip()


class FrequencyCap(StrictModel):
    max_exports: int = Field(2, ge=1)
    window_days: int = Field(7, ge=1)


class ReachConf(StrictModel):
    # E-mail domains that are placeholders, not mailboxes (lower-case).
    placeholder_email_domains: list[str] = []
    # At most max_exports segment exports per member in any window_days days; null: no cap.
    frequency_cap: FrequencyCap | None = FrequencyCap()


class SegmentsConf(StrictModel):
    segments: list[Segment] = Field(min_length=1)
    reach: ReachConf = ReachConf()

    @field_validator("segments")
    @classmethod
    def _unique(cls, segments: list[Segment]) -> list[Segment]:
        names = [s.name for s in segments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate segment name(s): {dupes}")
        return segments


def load_segments(conf_dir: Path | None = None, spark: SparkSession | None = None) -> SegmentsConf:
    """Read and validate conf/segments.yaml; with ``spark`` also analyse every predicate."""
    conf = load_model(SEGMENTS_FILE, SegmentsConf, conf_dir)
    if spark is not None:
        empty = spark.createDataFrame([], view_schema())
        validate_predicates(empty, conf, (conf_dir or CONF_DIR) / SEGMENTS_FILE)
    return conf


def load_reach_conf(conf_dir: Path | None = None) -> ReachConf:
    """The ``reach`` part of conf/segments.yaml (contact rules and frequency cap)."""
    return load_model(SEGMENTS_FILE, SegmentsConf, conf_dir).reach


def view_schema() -> T.StructType:
    """Schema of the segment view (what :func:`segment_view` returns), from schemas/*.yaml."""
    fields = list(table_schema("gold/member_features").struct.fields) + value_fields()
    names = {f.name for f in fields}
    for f in table_schema("gold/member_rfm").struct.fields:
        if f.name not in names:
            fields.append(f)
            names.add(f.name)
    fields += [
        T.StructField("stage", T.StringType()),
        T.StructField("lifecycle_stage", T.StringType()),
        T.StructField("tags", T.ArrayType(T.StringType())),
    ]
    names |= {"stage", "lifecycle_stage", "tags"}
    for f in table_schema("gold/member_channels").struct.fields:
        if f.name not in names:
            fields.append(f)
            names.add(f.name)
    for f in table_schema("silver/members").struct.fields:
        if f.name not in names and not MEMBER_PRIVATE.match(f.name):
            fields.append(f)
    return T.StructType(fields)


def validate_predicates(view: DataFrame, conf: SegmentsConf, path: Path | str) -> None:
    """Analyse each ``where`` on ``view`` (no data is read): boolean, known columns, valid SQL.

    All segments in one analysis (one engine round trip); only when that fails, one by one
    to name the segment at fault.
    """
    try:
        schema = view.select(
            *[F.expr(seg.where).alias(f"_p{i}") for i, seg in enumerate(conf.segments)]
        ).schema
    except Exception:  # noqa: BLE001 - the segment at fault is found below
        schema = None
    if schema is not None and all(isinstance(f.dataType, T.BooleanType) for f in schema.fields):
        return
    for seg in conf.segments:
        try:
            dtype = view.select(F.expr(seg.where).alias("_p")).schema["_p"].dataType
        except Exception as exc:  # noqa: BLE001 - the engine's analysis error, re-worded
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"{path}: segment {seg.name!r}: bad `where` {seg.where!r}: {first}"
            ) from None
        if not isinstance(dtype, T.BooleanType):
            raise ConfigError(
                f"{path}: segment {seg.name!r}: `where` must be boolean, got {dtype.simpleString()}"
            )
