"""Configuration: YAML files in `conf/`, validated on load with pydantic.

Every file has its own model. Unknown keys and bad values are errors that name
the file and the key, so a typo fails the run at start rather than being
silently ignored. Locations and the engine can be overridden by environment
variables (CONTRACT section 2).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = Path(os.environ.get("CDP_CONF_DIR", PROJECT_ROOT / "conf"))
SCHEMAS_DIR = PROJECT_ROOT / "schemas"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file is missing, unparsable or invalid."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(StrictModel):
    landing: Path
    lake: Path
    exports: Path
    work: Path


class EngineConf(StrictModel):
    kind: Literal["sail", "connect", "spark"] = "sail"
    connect_url: str = "sc://localhost:15002"
    timezone: str = "Asia/Shanghai"
    shuffle_partitions: int = Field(8, ge=1)
    spark_master: str = "local[2]"
    spark_packages: list[str] = []
    # Sail only: the query memory pool in MiB (0 = unbounded). Above it, sorts,
    # aggregations and repartitions spill to disk instead of growing the process.
    memory_limit_mb: int = Field(5120, ge=0)
    spill_dir: Path | None = None  # Sail spill files (default: the system temp folder)


class IngestConf(StrictModel):
    sources: list[Literal["pos", "web", "crm"]] = ["pos", "web", "crm"]
    max_quarantine_rate: float = Field(0.2, ge=0, le=1)
    min_rows_for_rate: int = Field(1000, ge=0)
    # Where landing files are parsed: auto = on the executors of a cluster engine
    # (connect, or spark with a non-local master), in this process otherwise.
    parse_on: Literal["auto", "driver", "executors"] = "auto"


class PrivacyConf(StrictModel):
    key_file: Path = Path("var/work/pii.key")
    create_key_if_missing: bool = True


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
    settings = load_model("pipeline.yaml", Settings, conf_dir, data)
    resolved = Paths(
        **{k: Path(v).expanduser().absolute() for k, v in settings.paths.model_dump().items()}
    )
    privacy = settings.privacy.model_copy(
        update={"key_file": Path(settings.privacy.key_file).expanduser().absolute()}
    )
    return settings.model_copy(update={"paths": resolved, "privacy": privacy})


def with_paths(settings: Settings, **overrides: str | Path | None) -> Settings:
    """Settings with some locations replaced (the `--landing/--lake/--exports` flags)."""
    current = settings.paths.model_dump()
    for key, value in overrides.items():
        if value is not None:
            current[key] = Path(value).expanduser().absolute()
    return settings.model_copy(update={"paths": Paths(**current)})


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (cached); tests build their own with load_settings."""
    return load_settings()
