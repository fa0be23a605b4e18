from pathlib import Path

import pytest

from jobs.config import ConfigError, load_settings, with_paths


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pipeline.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_shipped_config_loads_and_env_overrides(tmp_path):
    s = load_settings(env={"CDP_LAKE": str(tmp_path / "lk"), "CDP_ENGINE": "connect"})
    assert s.paths.lake == tmp_path / "lk"
    assert s.engine.kind == "connect"
    assert s.engine.timezone == "Asia/Shanghai"


def test_unknown_key_names_file_and_key(tmp_path):
    d = _write(
        tmp_path, "paths: {landing: a, lake: b, exports: c, work: d}\nengine: {kindd: sail}\n"
    )
    with pytest.raises(ConfigError, match=r"pipeline.yaml: engine.kindd"):
        load_settings(conf_dir=d, env={})


def test_bad_value_is_rejected(tmp_path):
    d = _write(
        tmp_path, "paths: {landing: a, lake: b, exports: c, work: d}\nengine: {kind: flink}\n"
    )
    with pytest.raises(ConfigError, match="engine.kind"):
        load_settings(conf_dir=d, env={})
    with pytest.raises(ConfigError, match="engine.kind"):
        load_settings(env={"CDP_ENGINE": "duckdb"})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(conf_dir=tmp_path, env={})
    d = _write(tmp_path, "paths: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(conf_dir=d, env={})


def test_object_store_locations_stay_uris(tmp_path):
    s = load_settings(env={"CDP_LAKE": "s3a://bucket/lake/", "CDP_EXPORTS": "s3://bucket/exports"})
    assert s.paths.lake == "s3://bucket/lake" and s.paths.exports == "s3://bucket/exports"
    assert isinstance(s.paths.landing, Path) and s.paths.landing.is_absolute()
    local = with_paths(s, lake=str(tmp_path / "lk"), exports="s3://other/x")
    assert local.paths.lake == tmp_path / "lk" and local.paths.exports == "s3://other/x"


def test_landing_in_an_object_store_is_refused():
    with pytest.raises(ConfigError, match="paths.landing: .*must be a local folder"):
        load_settings(env={"CDP_LANDING": "s3://bucket/landing"})
