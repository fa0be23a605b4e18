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


def _conf_copy(tmp_path: Path, name: str, change) -> Path:
    import shutil

    import yaml

    from jobs.config import CONF_DIR

    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    if name:
        data = yaml.safe_load((conf / name).read_text(encoding="utf-8"))
        change(data)
        (conf / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return conf


def _tag_on_unknown_column(data: dict) -> None:
    data["tags"][2]["when"] = "store_visits_365d > 0"


BROKEN = {
    # case: (file, change, words the error names)
    "rfm_stray_key": ("rfm.yaml", lambda d: d.update(teirs=[]), ["rfm.yaml", "teirs"]),
    "segments_stray_key": (
        "segments.yaml",
        lambda d: d["segments"][1].update(chanel="sms"),
        ["segments.yaml", "segments.1.chanel"],
    ),
    "tag_unknown_column": (
        "tags.yaml",
        _tag_on_unknown_column,
        ["tags.yaml", "omnichannel", "store_visits_365d"],
    ),
    "identity_stray_key": ("identity.yaml", lambda d: d.update(x=1), ["identity.yaml", "x"]),
    "airflow_stray_key": ("airflow.yaml", lambda d: d.update(x=1), ["airflow.yaml", "x"]),
    "analyst_stray_key": ("analyst.yaml", lambda d: d.update(x=1), ["analyst.yaml", "x"]),
}


def test_validate_conf_checks_every_shipped_file(spark):
    from jobs.config import CONF_DIR, validate_conf

    checked = {Path(p).name for p in validate_conf(spark)}
    assert checked == {p.name for p in CONF_DIR.glob("*.yaml")}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_validate_conf_names_the_file_and_key(spark, tmp_path, case):
    from jobs.config import validate_conf

    name, change, words = BROKEN[case]
    with pytest.raises(ConfigError) as err:
        validate_conf(spark, _conf_copy(tmp_path, name, change))
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_validate_conf_refuses_a_file_no_model_checks(spark, tmp_path):
    from jobs.config import validate_conf

    conf = _conf_copy(tmp_path, "", None)
    (conf / "segmnets.yaml").write_text("segments: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="segmnets.yaml: unknown configuration file"):
        validate_conf(spark, conf)


def test_object_store_locations_stay_uris(tmp_path):
    s = load_settings(env={"CDP_LAKE": "s3a://bucket/lake/", "CDP_EXPORTS": "s3://bucket/exports"})
    assert s.paths.lake == "s3://bucket/lake" and s.paths.exports == "s3://bucket/exports"
    assert isinstance(s.paths.landing, Path) and s.paths.landing.is_absolute()
    local = with_paths(s, lake=str(tmp_path / "lk"), exports="s3://other/x")
    assert local.paths.lake == tmp_path / "lk" and local.paths.exports == "s3://other/x"


def test_landing_in_an_object_store_is_refused():
    with pytest.raises(ConfigError, match="paths.landing: .*must be a local folder"):
        load_settings(env={"CDP_LANDING": "s3://bucket/landing"})
