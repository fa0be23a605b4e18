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
    assert env["SAIL_RUNTIME__TEMPORARY_FILES__PATHS"] == f'["{tmp_path / "spill"}"]'
    assert env["SAIL_OPTIMIZER__PREFER_HASH_JOIN"] == "false"  # joins that can spill


def test_zero_means_unbounded():
    conf = EngineConf(memory_limit_mb=0, hash_join_memory_limit_mb=0, joins="hash")
    assert sail_environment(conf) == {}
    assert sail_environment(EngineConf(memory_limit_mb=0)) == {
        "SAIL_OPTIMIZER__PREFER_HASH_JOIN": "false"
    }


def test_each_server_gets_its_pool():
    """The default (sort-merge) server and the hash-join server have pools of their own."""
    conf = EngineConf(memory_limit_mb=1024, hash_join_memory_limit_mb=2048)
    assert sail_environment(conf)["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] == str(2**30)
    hashed = sail_environment(conf, joins="hash")
    assert hashed["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] == str(2 * 2**30)
    # joins: hash for every step: the default server is a hash-join server too.
    both = sail_environment(conf.model_copy(update={"joins": "hash"}))
    assert both["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] == str(2 * 2**30)
    unbounded = sail_environment(EngineConf(hash_join_memory_limit_mb=0), joins="hash")
    assert "SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE" not in unbounded


def test_join_settings_are_checked():
    assert sail_environment(EngineConf(), joins="hash") == {
        "SAIL_RUNTIME__MEMORY_POOL__TYPE": "fair",
        "SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE": str(5120 * 1024 * 1024),
    }
    with pytest.raises(ValidationError, match="joins"):
        EngineConf(joins="nested_loop")
    with pytest.raises(ValidationError, match=r"unknown steps \['identiti'\]"):
        EngineConf(hash_join_steps=["identiti"])
    assert EngineConf().hash_join_nights == ["orders"] and EngineConf(hash_join_nights=[])
    with pytest.raises(ValidationError, match=r"steps \['features'\] have no hash-join night"):
        EngineConf(hash_join_nights=["features"])


def _join_operator(session, capsys) -> str:
    small = session.range(10).withColumnRenamed("id", "k")
    big = session.range(1000).withColumnRenamed("id", "k")
    capsys.readouterr()
    big.join(small, "k", "left_semi").explain()
    plan = capsys.readouterr().out
    return "sort-merge" if "SortMergeJoin" in plan else "hash" if "HashJoin" in plan else plan


def test_a_hash_join_step_runs_on_a_server_of_its_own(spark, capsys, tmp_path):
    """The steps of engine.hash_join_steps get a session whose joins are hash joins; the
    others the run's (sort-merge under the memory pool). The step's context keeps the
    run's lake, a backfill's scratch silver included, and key."""
    from jobs import engine
    from jobs.config import load_settings, with_paths
    from jobs.context import RunContext
    from jobs.pipeline import STEP_BY_NAME, _on_step_session
    from jobs.silver.backfill import BackfillLake

    hashed = engine.step_spark(spark, "identity", ["identity"])
    assert engine.step_spark(spark, "orders", ["identity"]) is spark and hashed is not spark
    assert engine.step_spark(spark, "identity", []) is spark
    assert engine.step_spark(hashed, "identity", ["identity"]) is hashed
    assert _join_operator(spark, capsys) == "sort-merge"
    assert _join_operator(hashed, capsys) == "hash"

    settings = with_paths(load_settings(env={}), lake=tmp_path / "lake")
    ctx = RunContext(settings=settings, spark=spark, as_of=__import__("datetime").date(2026, 1, 2))
    ctx.__dict__["pii_key"] = b"k" * 32
    ctx.__dict__["lake"] = BackfillLake(ctx.lake, tmp_path / "scratch")
    moved = _on_step_session(ctx, STEP_BY_NAME["identity"])
    assert moved.spark is hashed and moved.lake.spark is hashed
    assert isinstance(moved.lake, BackfillLake) and moved.lake.real.spark is hashed
    assert moved.lake.scratch.root == ctx.lake.scratch.root and moved.lake.root == ctx.lake.root
    assert moved.pii_key == ctx.pii_key and moved.run_id == ctx.run_id
    assert _on_step_session(ctx, STEP_BY_NAME["orders"]) is ctx


def test_sessions_outlive_a_long_step_on_the_other_server(spark):
    """Sail drops a session idle for 15 minutes by default; a 5M-member identity step ran
    23 minutes on the hash-join server while the run's session waited on the other."""
    import os

    from jobs import engine

    hashed = engine.step_spark(spark, "identity", ["identity"])
    assert hashed is not spark
    assert int(os.environ[engine.SESSION_TIMEOUT]) >= 7 * 24 * 3600
    assert spark.range(3).count() == 3 and hashed.range(2).count() == 2


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


def test_parquet_writes_on_sail_name_their_codec_and_read_back_whole(spark, tmp_path):
    """The embedded Sail sessions write intermediates with ``compression`` ``zstd`` (named:
    Sail's unnamed default took 1.5-2x longer for the same ZSTD files); a session this
    module did not make keeps its engine's default. The scratch reads back every row."""
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    from jobs.engine import parquet_options
    from jobs.lake import parquet_materialiser

    assert parquet_options(spark) == {"compression": "zstd"}
    assert parquet_options(object()) == {}
    df = spark.range(5000).select(F.col("id"), (F.col("id") % 7).cast("string").alias("k"))
    back = parquet_materialiser(tmp_path)(df, "scratch")
    assert sorted(map(tuple, back.collect())) == sorted(map(tuple, df.collect()))
    files = list((tmp_path / "scratch").glob("*.parquet"))
    assert files
    codecs = {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in files}
    assert codecs == {"ZSTD"}


def test_servers_of_other_pools_start_beside_the_run_and_an_unbounded_one_has_no_pool(spark):
    """A server for other pool sizes (a step's second try) leaves the run's sessions
    running, and an unbounded one does not inherit the pool variables an earlier server
    set (Sail reads them when it starts)."""
    import os

    from jobs import engine

    if engine.POOL_SIZE_VARIABLE in (engine._user_sail_env or ()):
        pytest.skip("the pool is set by this environment's own SAIL_* variables")
    assert os.environ.get(engine.POOL_SIZE_VARIABLE)  # the fixture's server set its pool
    conf = EngineConf(shuffle_partitions=4, memory_limit_mb=0, hash_join_memory_limit_mb=0)
    unbounded = engine.get_spark(conf)
    try:
        assert engine.POOL_SIZE_VARIABLE not in os.environ
        assert unbounded.range(3).count() == 3
        assert spark.range(2).count() == 2  # the run's session still serves
        assert engine.bigger_pool_spark(unbounded, 4096) is None  # no bound to raise
    finally:
        engine.release_pools(unbounded, keep=spark)
    assert (engine.EngineConf().joins, (0, 0)) not in engine._servers
    assert spark.range(2).count() == 2
