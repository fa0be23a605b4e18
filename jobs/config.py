"""Configuration: YAML files in `conf/`, validated on load with pydantic.

Every file has its own model. Unknown keys and bad values are errors that name
the file and the key, so a typo fails the run at start rather than being
silently ignored. Locations and the engine can be overridden by environment
variables (CONTRACT section 2).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = Path(os.environ.get("CDP_CONF_DIR", PROJECT_ROOT / "conf"))
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

if TYPE_CHECKING:  # the DAG files import this module: keep pyspark out of it
    from pyspark.sql import SparkSession

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing, unparsable or invalid."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(StrictModel):
    landing: Path
    # The lake and the exports may live in an object store: ``s3://bucket/prefix`` stays
    # text (jobs.storage), a local folder becomes an absolute Path.
    lake: Path | str
    exports: Path | str
    work: Path

    @field_validator("landing", "work", mode="before")
    @classmethod
    def _local_only(cls, value: object) -> object:
        if str(value).startswith(("s3://", "s3a://")):
            raise ValueError("must be a local folder (the lake and exports may be s3:// URIs)")
        return value


# Steps whose incremental night can run on the hash-join server (engine.hash_join_nights).
HASH_JOIN_NIGHT_STEPS = ("orders",)


class EngineConf(StrictModel):
    kind: Literal["sail", "connect", "spark"] = "sail"
    connect_url: str = "sc://localhost:15002"
    timezone: str = "Asia/Shanghai"
    # JVM engines only: Sail 0.7.2 ignores spark.sql.shuffle.partitions (its partitions are
    # SAIL_EXECUTION__DEFAULT_PARALLELISM, by default the cores; docs/scaling.md).
    shuffle_partitions: int = Field(8, ge=1)
    spark_master: str = "local[2]"
    # JVM engines only: Spark settings over the small-machine defaults of a local JVM
    # session (jobs.engine.LOCAL_JVM_CONF), and given to the Connect server that
    # `cdp engine serve-spark` starts; e.g. {"spark.driver.memory": "16g"} on a big host.
    spark_conf: dict[str, str] = {}
    # Sail only: the query memory pool in MiB (0 = unbounded) of the server whose joins
    # are ``joins``. Above it, sorts, aggregations and repartitions spill to disk instead
    # of growing the process (2 GiB: a 1M full run's orders step peaked at 6.0-6.4 GB
    # under 3 GiB, 3.9-4.9 GB under 2 GiB, the run as fast; docs/scaling.md).
    memory_limit_mb: int = Field(2048, ge=0)
    # Sail only: the same for the server whose joins are hash joins (the steps of
    # ``hash_join_steps``): a hash join's build side cannot spill, and its nights' big
    # diffs and groupings ran 15 s slower at 1M under 3 GiB than under 5 GiB.
    hash_join_memory_limit_mb: int = Field(5120, ge=0)
    # Sail only: a step whose query outgrew its server's pool ("Failed to allocate ...")
    # runs once more, at once, on servers whose two pools are this many MiB: 0 (default)
    # takes half the memory the host has available at that moment, -1 turns the second
    # try off. Steps are crash-safe (a step stopped half-way reruns from what it left),
    # so the second try gives what a first run on the bigger pool gives. Measured: a 5M
    # full run's orders step fails under 2 GiB and passes under 6 GiB (docs/scaling.md).
    retry_memory_limit_mb: int = Field(0, ge=-1)
    spill_dir: Path | None = None  # Sail spill files (default: the system temp folder)
    # Sail only: how equi-joins run. ``sort_merge``: both sides sorted, which spills
    # under the pool but sorts millions of rows to match a few thousand. ``hash``: a hash
    # table of one side, probed by the other (cheap when one side is small); that table
    # is held in memory and cannot spill (a 1M-member first ingest fails in a 5 GiB pool).
    joins: Literal["hash", "sort_merge"] = "sort_merge"
    # Sail only: steps that run on a second embedded server whose joins are hash joins
    # (their joins hold a night's few keys against history: 1M-member identity night
    # 242 -> 144 s; the points ledger's rebuild, 5.1M transactions joined to the xref:
    # 7.5 -> 4.4 s, peak 1.9 -> 1.2 GB; the gold steps and exports, members against
    # their aggregates: 56.6-61.0 -> 49.9-52.2 s, peak 3.3 -> 3.5-3.6 GB). Names of
    # jobs.pipeline steps.
    hash_join_steps: list[str] = [
        "identity", "points_ledger", "features", "value", "rfm", "points", "tags",
        "lifecycle", "kpis", "channels", "exports",
    ]  # fmt: skip
    # Sail only: steps whose incremental nights run on the hash-join server while their
    # full runs keep ``joins`` (a full run joins all of history on both sides). Steps of
    # HASH_JOIN_NIGHT_STEPS only: 1M-member orders night, re-keying 250 orders 58.8 ->
    # 26.2 s.
    hash_join_nights: list[str] = ["orders"]

    @field_validator("hash_join_steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        from jobs.pipeline import STEP_BY_NAME  # imports nothing of this module

        unknown = sorted(set(steps) - set(STEP_BY_NAME))
        if unknown:
            raise ValueError(f"unknown steps {unknown}; steps are {sorted(STEP_BY_NAME)}")
        return steps

    @field_validator("hash_join_nights")
    @classmethod
    def _night_steps(cls, steps: list[str]) -> list[str]:
        unknown = sorted(set(steps) - set(HASH_JOIN_NIGHT_STEPS))
        if unknown:
            raise ValueError(
                f"steps {unknown} have no hash-join night; steps that do: "
                f"{list(HASH_JOIN_NIGHT_STEPS)}"
            )
        return steps


def _source_names() -> tuple[str, ...]:
    from jobs.sources import SOURCE_NAMES  # the registry imports nothing of this module

    return SOURCE_NAMES


class IngestConf(StrictModel):
    # Sources of the registry (jobs.sources) this deployment takes in (default: all).
    sources: list[str] = Field(default_factory=lambda: list(_source_names()))
    max_quarantine_rate: float = Field(0.2, ge=0, le=1)
    min_rows_for_rate: int = Field(1000, ge=0)
    # Rows dated before this (order_ts, event_ts, updated_ts) are quarantined as
    # *_out_of_range; None: no lower bound (history from any year is taken in).
    earliest_date: dt.date | None = None
    # Where landing files are parsed: auto = on the executors of a cluster engine
    # (connect, or spark with a non-local master), in this process otherwise.
    parse_on: Literal["auto", "driver", "executors"] = "auto"
    # Great Expectations Data Docs (HTML of each run's checks, under <work>/gx): built by
    # every run, or only by a run whose quality step fails (over max_quarantine_rate).
    # Building them costs a run ~4-5 s of CPU (importing GX, rendering) whatever the
    # night brings; meta/quality_results holds every run's checks either way.
    data_docs: Literal["every_run", "on_failure"] = "every_run"
    # A step takes its new files in batches of whole days of at most this many landing
    # bytes (0: one batch), so a first run over a long history needs the disk and memory
    # of one batch (jobs.ingest.job.day_batches). 4 GiB: a 1M-member first run is one batch.
    max_batch_bytes: int = Field(4 << 30, ge=0)

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, sources: list[str]) -> list[str]:
        unknown = [s for s in sources if s not in _source_names()]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; sources are: {list(_source_names())}")
        return sources


class PrivacyConf(StrictModel):
    # The PII HMAC key comes from a secret: CDP_PII_KEY, CDP_PII_KEY_FILE / key_file, or
    # the Airflow connection below. Its fingerprint is kept in the lake (jobs.lake_state).
    key_file: Path | None = None
    airflow_conn_id: str = "cdp_pii_key"
    create_key_if_missing: bool = True  # demo only: a new lake gets a key in <lake>/_cdp


class Settings(StrictModel):
    paths: Paths
    engine: EngineConf = EngineConf()
    ingest: IngestConf = IngestConf()
    privacy: PrivacyConf = PrivacyConf()


def _format_error(path: Path, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{key}: {e['msg']}")
    return f"{path}: " + "; ".join(parts)


def read_yaml(name: str, conf_dir: Path | None = None) -> dict:
    """Read `conf/<name>` as a mapping; a clear ConfigError when it is not one."""
    path = (conf_dir or CONF_DIR) / name
    if not path.exists():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_model(
    name: str, model: type[M], conf_dir: Path | None = None, data: dict | None = None
) -> M:
    """Validate `conf/<name>` (or `data`, already read from it) against `model`."""
    path = (conf_dir or CONF_DIR) / name
    raw = read_yaml(name, conf_dir) if data is None else data
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None


def load_settings(conf_dir: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load `conf/pipeline.yaml` and apply the CDP_* environment overrides."""
    env = os.environ if env is None else env
    data = read_yaml("pipeline.yaml", conf_dir)
    paths = dict(data.get("paths") or {})
    for key, var in (
        ("landing", "CDP_LANDING"),
        ("lake", "CDP_LAKE"),
        ("exports", "CDP_EXPORTS"),
        ("work", "CDP_WORK"),
    ):
        if env.get(var):
            paths[key] = env[var]
    data["paths"] = paths
    engine = dict(data.get("engine") or {})
    if env.get("CDP_ENGINE"):
        engine["kind"] = env["CDP_ENGINE"]
    if env.get("CDP_CONNECT_URL"):
        engine["connect_url"] = env["CDP_CONNECT_URL"]
    data["engine"] = engine
    if env.get("CDP_DATA_DOCS"):
        data["ingest"] = {**(data.get("ingest") or {}), "data_docs": env["CDP_DATA_DOCS"]}
    settings = load_model("pipeline.yaml", Settings, conf_dir, data)
    resolved = Paths(**{k: _location(v) for k, v in settings.paths.model_dump().items()})
    key_file = settings.privacy.key_file
    privacy = settings.privacy.model_copy(
        update={"key_file": Path(key_file).expanduser().absolute() if key_file else None}
    )
    return settings.model_copy(update={"paths": resolved, "privacy": privacy})


def _location(value: str | Path) -> str | Path:
    """An absolute local Path, or an object-store URI kept as text."""
    from jobs.storage import normalise

    return normalise(value)


def with_paths(settings: Settings, **overrides: str | Path | None) -> Settings:
    """Settings with some locations replaced (the `--landing/--lake/--exports` flags)."""
    current = settings.paths.model_dump()
    for key, value in overrides.items():
        if value is not None:
            current[key] = _location(value)
    return settings.model_copy(update={"paths": Paths(**current)})


ConfCheck = Callable[["SparkSession", Path], object]


def conf_checks() -> dict[str, ConfCheck]:
    """Each conf/ file and the function that loads and validates it (imports are lazy).

    A new file in conf/ must be added here: `validate_conf` refuses one it cannot check.
    """
    from jobs.analyst import load_analyst_conf
    from jobs.exports.segments import load_segments
    from jobs.gold import conf as gold
    from jobs.gold.kpis import load_kpis
    from jobs.gold.points import load_points_conf
    from jobs.gold.value import load_value
    from jobs.identity.conf import load_identity_conf, load_identity_weights
    from jobs.maintenance import load_maintenance_conf
    from jobs.orchestration.settings import load_airflow_conf
    from jobs.silver.conf import load_silver_conf

    return {
        "pipeline.yaml": lambda spark, d: load_settings(d),
        "airflow.yaml": lambda spark, d: load_airflow_conf(d),
        "analyst.yaml": lambda spark, d: load_analyst_conf(d),
        "identity.yaml": lambda spark, d: load_identity_conf(d),
        "identity_weights.yaml": lambda spark, d: load_identity_weights(d),
        "silver.yaml": lambda spark, d: load_silver_conf(d),
        "features.yaml": lambda spark, d: gold.load_features(d),
        "rfm.yaml": lambda spark, d: gold.load_rfm(d),
        "tags.yaml": lambda spark, d: gold.load_tags(spark, d),
        "lifecycle.yaml": lambda spark, d: gold.load_lifecycle(spark, d),
        "segments.yaml": lambda spark, d: load_segments(d, spark),
        "maintenance.yaml": lambda spark, d: load_maintenance_conf(d),
        "value.yaml": lambda spark, d: load_value(d),
        "kpis.yaml": lambda spark, d: load_kpis(d),
        "points.yaml": lambda spark, d: load_points_conf(d),
    }


def validate_conf(spark: SparkSession, conf_dir: Path | None = None) -> list[str]:
    """Load and validate every file of ``conf_dir``, SQL rules analysed on ``spark``.

    Reads nothing but conf/ and schemas/ (rules run on empty DataFrames), so `cdp run`
    calls it before any step writes. Returns the files checked; raises ConfigError
    naming the file and the key (or the rule) on the first problem.
    """
    conf_dir = Path(conf_dir or CONF_DIR)
    checks = conf_checks()
    unknown = sorted(
        p.name for p in conf_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in checks
    )
    if unknown:
        raise ConfigError(
            f"{conf_dir / unknown[0]}: unknown configuration file (no model validates it; "
            f"known: {', '.join(checks)})"
        )
    for check in checks.values():
        check(spark, conf_dir)
    # identity_weights.yaml is optional (written by `cdp identity train`).
    return [str(conf_dir / name) for name in checks if (conf_dir / name).exists()]


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (cached); tests build their own with load_settings."""
    return load_settings()
