"""The embedded engine's memory settings reach Sail as its SAIL_* variables."""

from __future__ import annotations

import shutil

import pytest
from pydantic import ValidationError

from jobs.config import PROJECT_ROOT, EngineConf
from jobs.engine import sail_environment


def test_memory_limit_becomes_a_fair_pool(tmp_path):
    env = sail_environment(EngineConf(memory_limit_mb=512, spill_dir=tmp_path / "spill"))
    assert env["SAIL_RUNTIME__MEMORY_POOL__TYPE"] == "fair"
    assert env["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] == str(512 * 1024 * 1024)
    assert env["SAIL_OPTIMIZER__PREFER_HASH_JOIN"] == "false"  # joins that can spill
    assert env["SAIL_RUNTIME__TEMPORARY_FILES__PATHS"] == f'["{tmp_path / "spill"}"]'


def test_zero_means_unbounded():
    assert sail_environment(EngineConf(memory_limit_mb=0)) == {}


def test_negative_limit_is_a_config_error():
    with pytest.raises(ValidationError, match="memory_limit_mb"):
        EngineConf(memory_limit_mb=-1)


def test_missing_delta_jars_is_one_line_naming_make_setup(tmp_path):
    from jobs.engine import delta_jars

    with pytest.raises(RuntimeError, match=r"missing in .*: run `make setup`") as err:
        delta_jars(tmp_path / "none")
    assert "\n" not in str(err.value)
    (tmp_path / "jsr305-3.0.2.jar").write_bytes(b"")  # a dependency alone is not enough
    with pytest.raises(RuntimeError, match="make setup"):
        delta_jars(tmp_path)


def test_make_setup_resolved_delta_for_this_spark():
    # `make setup` (jvm/pom.xml) copies delta-spark for Spark 4.1 / Scala 2.13 and its
    # runtime dependencies; the JVM session puts exactly these on its class path.
    from jobs.engine import delta_jars

    names = {j.name for j in delta_jars()}
    assert "delta-spark_2.13-4.1.0.jar" in names and "delta-storage-4.1.0.jar" in names


def test_spark_conf_from_the_configuration_overrides_the_local_defaults(tmp_path):
    from jobs.config import load_settings
    from jobs.engine import LOCAL_JVM_CONF, local_jvm_conf

    conf_dir = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf_dir)
    text = (conf_dir / "pipeline.yaml").read_text(encoding="utf-8")
    text = text.replace("  spark_conf: {}", '  spark_conf: {"spark.driver.memory": "16g"}')
    (conf_dir / "pipeline.yaml").write_text(text, encoding="utf-8")
    engine = load_settings(conf_dir, env={}).engine
    got = local_jvm_conf(engine)
    assert got["spark.driver.memory"] == "16g" != LOCAL_JVM_CONF["spark.driver.memory"]
    assert got["spark.sql.sources.parallelPartitionDiscovery.parallelism"] == "4"
    with pytest.raises(ValidationError):
        EngineConf(spark_conf=["spark.driver.memory=16g"])


def test_dataframe_call_sites_are_not_recorded(spark):
    # PySpark's DataFrame debugging walks the stack and tries `import IPython` on every
    # DataFrame and Column call (~9,000 a night); the engine's sessions turn it off.
    from pyspark.errors.utils import is_debugging_enabled

    from jobs.engine import DEBUGGING_CONF

    assert spark.conf.get(DEBUGGING_CONF) == "false"
    assert is_debugging_enabled() is False


def test_debugging_is_left_to_a_server_that_holds_it_static():
    """A JVM Spark Connect server refuses the setting (static): the session goes on; any
    other failure to set it is raised."""
    from jobs.engine import DEBUGGING_CONF, SMALL_LAKE_CONF, debugging_off

    class Conf:
        def __init__(self, error: str | None):
            self.error, self.values = error, {}

        def set(self, key: str, value: str) -> None:
            if self.error:
                raise RuntimeError(self.error)
            self.values[key] = value

    class Session:
        def __init__(self, error: str | None = None):
            self.conf = Conf(error)

    ok = Session()
    assert debugging_off(ok) is True and ok.conf.values == {DEBUGGING_CONF: "false"}
    static = "[CANNOT_MODIFY_STATIC_CONFIG] Cannot modify the value of the static Spark config"
    assert debugging_off(Session(static)) is False
    with pytest.raises(RuntimeError, match="connection refused"):
        debugging_off(Session("connection refused"))
    # The servers we start and the local JVM session get it at start.
    assert SMALL_LAKE_CONF[DEBUGGING_CONF] == "false"
