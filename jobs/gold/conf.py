"""Configuration of the gold jobs: `conf/rfm.yaml`, `conf/features.yaml`, `conf/tags.yaml`,
`conf/lifecycle.yaml`, and the analysis of their SQL rules against table schemas.

Rules are data, so a broken one must fail at load time, naming the rule, rather
than halfway through a nightly run: every expression is analysed against an empty
DataFrame with the schema it will run on (the engine resolves columns and types
without touching data).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from jobs.config import ConfigError, StrictModel, load_model
from jobs.gold.points import points_fields
from jobs.gold.value_view import value_fields
from jobs.schemas import table_schema

SEGMENTS = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Cannot Lose",
    "Hibernating",
    "Lost",
)


class Tier(StrictModel):
    name: str = Field(min_length=1)
    min_monetary: float


class RfmConf(StrictModel):
    segments: dict[int, list[str]]
    tiers: list[Tier]
    default_tier: str = "bronze"

    @field_validator("segments")
    @classmethod
    def _full_grid(cls, grid: dict[int, list[str]]) -> dict[int, list[str]]:
        if sorted(grid) != [1, 2, 3, 4, 5]:
            raise ValueError("needs one row for each r_score 1..5")
        for r, row in grid.items():
            if len(row) != 5:
                raise ValueError(f"row {r} needs 5 segments (fm_score 1..5)")
            unknown = [s for s in row if s not in SEGMENTS]
            if unknown:
                raise ValueError(f"row {r}: unknown segment(s) {unknown}; known: {SEGMENTS}")
        return grid

    @field_validator("tiers")
    @classmethod
    def _descending(cls, tiers: list[Tier]) -> list[Tier]:
        mins = [t.min_monetary for t in tiers]
        if mins != sorted(mins, reverse=True):
            raise ValueError("tiers must be listed highest min_monetary first")
        return tiers


class FeatureWindows(StrictModel):
    """Lengths in days of the windows of gold/member_features; a window of N days ending
    on D is [D-(N-1), D], and the columns it feeds are named after N (``..._<N>d``)."""

    rolling: list[int] = Field([7, 30, 90, 365], min_length=1)
    year: int = Field(365, ge=1)
    trend: int = Field(90, ge=1)
    categories: int = Field(90, ge=1)
    views: int = Field(7, ge=1)

    @field_validator("rolling")
    @classmethod
    def _positive_unique(cls, days: list[int]) -> list[int]:
        if any(d < 1 for d in days) or len(set(days)) != len(days):
            raise ValueError("windows must be distinct whole numbers of days >= 1")
        return sorted(days)

    @model_validator(mode="after")
    def _year_and_trend_rolling(self) -> FeatureWindows:
        for key in ("year", "trend"):
            if getattr(self, key) not in self.rolling:
                raise ValueError(f"{key} ({getattr(self, key)}) must be one of rolling")
        if self.year != max(self.rolling):
            raise ValueError(f"year ({self.year}) must be the longest rolling window")
        return self

    def feature_columns(self) -> dict[str, list[str]]:
        """Columns of gold/member_features each window key names (for schema checks)."""
        y = self.year
        return {
            "rolling": [
                f"{m}_{n}d"
                for n in self.rolling
                for m in ("frequency", "spend", "returns", "monetary")
            ],
            "year": [
                f"{m}_{y}d"
                for m in (
                    "aov",
                    "returns_count",
                    "store_purchases",
                    "online_purchases",
                    "gross",
                    "discount",
                    "discount_share",
                    "night_purchases",
                    "night_share",
                    "category_spend",
                    "category_shares",
                )
            ],
            "trend": [f"spend_{self.trend}d", f"spend_prev_{self.trend}d"],
            "categories": [f"distinct_categories_{self.categories}d"],
            "views": [f"product_views_{self.views}d", f"viewed_categories_{self.views}d"],
        }

    def rfm_columns(self) -> list[str]:
        """Columns of gold/member_rfm kept from the shorter windows (CONTRACT 4)."""
        short = [n for n in self.rolling if n != self.year]
        cols = [f"{m}_{n}d" for n in short for m in ("frequency", "monetary")]
        return cols + [f"distinct_categories_{self.categories}d"]


class FeaturesConf(StrictModel):
    night_start_hour: int = Field(21, ge=0, le=23)
    night_end_hour: int = Field(5, ge=0, le=23)
    windows: FeatureWindows = FeatureWindows()


class TagRule(StrictModel):
    name: str = Field(min_length=1)
    description: str = ""
    when: str = Field(min_length=1)

    @property
    def placeholders(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.name) if f]

    @property
    def literal_parts(self) -> list[tuple[str, str | None]]:
        """(literal text, placeholder column or None) pieces of the name template."""
        return [(lit, f or None) for lit, f, _, _ in string.Formatter().parse(self.name)]


class TagsConf(StrictModel):
    tags: list[TagRule]

    @model_validator(mode="after")
    def _unique(self) -> TagsConf:
        names = [t.name for t in self.tags]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate tag rule name(s) {dups}")
        return self


class LifecycleRule(StrictModel):
    stage: str = Field(min_length=1)
    description: str = ""
    when: str = Field(min_length=1)
    params: dict[str, float | int] = {}

    def condition(self) -> str:
        """`when` with its `{param}` placeholders filled in."""
        try:
            return self.when.format(**self.params)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"lifecycle rule {self.stage!r}: bad placeholder {exc}") from None


class LifecycleConf(StrictModel):
    rules: list[LifecycleRule] = Field(min_length=1)
    default_stage: str = "active"


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def load_rfm(conf_dir: Path | None = None) -> RfmConf:
    return load_model("rfm.yaml", RfmConf, conf_dir)


def load_features(conf_dir: Path | None = None) -> FeaturesConf:
    """conf/features.yaml, its windows checked against the gold schemas: the columns a
    window names must be declared in schemas/gold.yaml (a new window is a schema change)."""
    conf = load_model("features.yaml", FeaturesConf, conf_dir)
    declared = set(table_schema("gold/member_features").columns)
    for key, cols in conf.windows.feature_columns().items():
        missing = [c for c in cols if c not in declared]
        if missing:
            raise ConfigError(
                f"conf/features.yaml: windows.{key}: gold/member_features has no column(s) "
                f"{missing}; declare them in schemas/gold.yaml"
            )
    rfm_declared = set(table_schema("gold/member_rfm").columns)
    missing = [c for c in conf.windows.rfm_columns() if c not in rfm_declared]
    if missing:
        raise ConfigError(
            f"conf/features.yaml: windows: gold/member_rfm has no column(s) {missing}; "
            "declare them in schemas/gold.yaml"
        )
    return conf


def tag_input_schema() -> T.StructType:
    """Schema the tag rules run on: member_features, the member's RFM scores, value and
    points."""
    feats = table_schema("gold/member_features").struct
    rfm = {f.name: f for f in table_schema("gold/member_rfm").struct.fields}
    extra = [rfm[c] for c in ("r_score", "f_score", "m_score", "fm_score", "rfm_segment")]
    return T.StructType(list(feats.fields) + extra + value_fields() + points_fields())


def _check_boolean(spark: SparkSession, schema: T.StructType, expr: str, what: str) -> None:
    """Analyse ``expr`` against ``schema``; ConfigError naming ``what`` unless it is boolean."""
    try:
        out = spark.createDataFrame([], schema).selectExpr(f"({expr}) AS _rule").schema
    except Exception as exc:  # noqa: BLE001 - any analysis or parse error is the rule's fault
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{what}: invalid expression {expr!r}: {first[:300]}") from None
    dtype = out.fields[0].dataType
    if not isinstance(dtype, T.BooleanType | T.NullType):
        raise ConfigError(f"{what}: expression {expr!r} is {dtype.simpleString()}, not boolean")


def validate_tags(spark: SparkSession, conf: TagsConf, schema: T.StructType | None = None) -> None:
    """Reject at load time any tag rule that cannot run on ``schema`` (default: tag input)."""
    schema = schema or tag_input_schema()
    cols = {f.name for f in schema.fields}
    for rule in conf.tags:
        what = f"conf/tags.yaml: tag rule {rule.name!r}"
        try:
            placeholders = rule.placeholders
        except ValueError as exc:
            raise ConfigError(f"{what}: bad name template: {exc}") from None
        for ph in placeholders:
            if not _IDENT.match(ph) or ph not in cols:
                raise ConfigError(f"{what}: placeholder {{{ph}}} is not a column")
        _check_boolean(spark, schema, rule.when, what)


def load_tags(
    spark: SparkSession, conf_dir: Path | None = None, schema: T.StructType | None = None
) -> TagsConf:
    conf = load_model("tags.yaml", TagsConf, conf_dir)
    validate_tags(spark, conf, schema)
    return conf


def lifecycle_input_schema() -> T.StructType:
    """Schema the lifecycle rules run on: member_features plus the member's value columns."""
    return T.StructType(list(table_schema("gold/member_features").struct.fields) + value_fields())


def validate_lifecycle(
    spark: SparkSession, conf: LifecycleConf, schema: T.StructType | None = None
) -> None:
    schema = schema or lifecycle_input_schema()
    for i, rule in enumerate(conf.rules, start=1):
        what = f"conf/lifecycle.yaml: rule {i} ({rule.stage})"
        try:
            cond = rule.condition()
        except ValueError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        _check_boolean(spark, schema, cond, what)


def load_lifecycle(
    spark: SparkSession, conf_dir: Path | None = None, schema: T.StructType | None = None
) -> LifecycleConf:
    conf = load_model("lifecycle.yaml", LifecycleConf, conf_dir)
    validate_lifecycle(spark, conf, schema)
    return conf
