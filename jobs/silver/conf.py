"""Configuration of the silver order step: `conf/silver.yaml`."""

from __future__ import annotations

from pathlib import Path

from jobs.config import StrictModel, load_model


class SilverOptions(StrictModel):
    incremental: bool = True


class SilverConf(StrictModel):
    silver: SilverOptions = SilverOptions()


def load_silver_conf(conf_dir: Path | None = None) -> SilverConf:
    """Validated `conf/silver.yaml`; defaults (incremental) when the file is absent."""
    from jobs.config import CONF_DIR

    if not ((conf_dir or CONF_DIR) / "silver.yaml").exists():
        return SilverConf()
    return load_model("silver.yaml", SilverConf, conf_dir)
