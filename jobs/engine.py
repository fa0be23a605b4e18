"""One function gives a SparkSession, whatever the engine (CONTRACT section 2).

* ``sail`` (default): an embedded Spark Connect server from ``pysail`` started in
  this process on a free loopback port; no JVM. It is stopped at interpreter exit
  or by :func:`stop`.
* ``connect``: a remote Spark Connect URL (Apache Spark 4 with Delta, or a Sail
  cluster).
* ``spark``: a local JVM SparkSession configured for delta-spark. The Delta JARs
  are the ones ``make setup`` copied into ``.jars/`` (jvm/pom.xml); nothing is
  downloaded when a session starts.

Job code only sees :class:`pyspark.sql.SparkSession`, so it runs unchanged on all
three.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from jobs.config import PROJECT_ROOT, EngineConf

log = logging.getLogger(__name__)

_lock = threading.Lock()
# Embedded Sail servers and their sessions, by slot: the join strategy (``engine.joins``
# for every step, ``hash`` for the steps of ``engine.hash_join_steps``) and the two pool
# sizes (those of the configuration; bigger ones for a step rerun after its query outgrew
# its pool, bigger_pool_spark), all for ``_session_key``. Other engines: one slot.
Slot = tuple[str, tuple[int, int] | None]
_servers: dict[Slot, Any] = {}
_sessions: dict[Slot, SparkSession] = {}
_slot_confs: dict[Slot, EngineConf] = {}  # the configuration each slot's session is of
_session_key: tuple | None = None
# The SAIL_* variables the user had set before our first server: they win over ours.
_user_sail_env: frozenset[str] | None = None
PREFER_HASH_JOIN = "SAIL_OPTIMIZER__PREFER_HASH_JOIN"
POOL_SIZE_VARIABLE = "SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"
POOL_VARIABLES = frozenset({"SAIL_RUNTIME__MEMORY_POOL__TYPE", POOL_SIZE_VARIABLE})
# Sail drops a session idle for 900 s by default. A run's sessions live on two servers (a
# step of ``hash_join_steps`` runs on the other): at 5M members the identity step ran
# 23 minutes on the hash-join server, and the run's own session was gone when the step
# was recorded ("session ... is not running"). Ours live as long as the process.
SESSION_TIMEOUT = "SAIL_SPARK__SESSION_TIMEOUT_SECS"
SESSION_TIMEOUT_SECS = 30 * 24 * 3600


def sail_environment(conf: EngineConf, joins: str | None = None) -> dict[str, str]:
    """The SAIL_* variables of an embedded server for ``conf`` whose joins are ``joins``
    (default ``conf.joins``); read when the server starts."""
    env = {}
    strategy = joins or conf.joins
    pool_mb = conf.hash_join_memory_limit_mb if strategy == "hash" else conf.memory_limit_mb
    if pool_mb:
        # A fair pool shares the limit between the spilling operators of a query, so a
        # big aggregation spills instead of taking the machine (measured: a 20M-row
        # distinct count peaks at 3.5 GB unbounded, 1.3 GB under a 1 GiB pool, as fast).
        env["SAIL_RUNTIME__MEMORY_POOL__TYPE"] = "fair"  # one of POOL_VARIABLES
        env[POOL_SIZE_VARIABLE] = str(pool_mb * 2**20)
    if strategy == "sort_merge":
        # A hash join cannot spill its build side: under a limit a huge one fails
        # ("Failed to allocate ... HashJoinInput", a 1M-member first ingest) where a
        # sort-merge join spills. Measured on an 8M x 8M join: 3.2 s / 0.6 GB peak
        # sort-merge vs 2.9 s / 2.1 GB hash; but a semi-join of 51M rows with 100k keys:
        # 20.6 s sort-merge, 9.2 s hash.
        env[PREFER_HASH_JOIN] = "false"
    if conf.spill_dir:
        env["SAIL_RUNTIME__TEMPORARY_FILES__PATHS"] = f'["{Path(conf.spill_dir).resolve()}"]'
    return env


def _start_sail(conf: EngineConf, joins: str, slot: Slot) -> str:
    """Start the embedded Sail server of ``slot`` (joins ``joins``, the pools of
    ``conf``) once per process; return its sc:// URL. A server reads its SAIL_* variables
    when it starts, so each strategy is a server of its own (each with its memory pool;
    steps run one at a time)."""
    global _user_sail_env
    if slot not in _servers:
        if _user_sail_env is None:
            _user_sail_env = frozenset(k for k in os.environ if k.startswith("SAIL_"))
            atexit.register(stop)
        # Sail logs sessions at INFO and no-op persists at WARN on stderr; keep the
        # user's terminal for our own lines (RUST_LOG=warn or info to see them).
        os.environ.setdefault("RUST_LOG", "error")
        # Hash joins are Sail's default; set explicitly, as a server started before may
        # have left "false". Variables set by the user win over the configuration.
        fixed = {PREFER_HASH_JOIN: "true", SESSION_TIMEOUT: str(SESSION_TIMEOUT_SECS)}
        wanted = {**fixed, **sail_environment(conf, joins)}
        for name in POOL_VARIABLES - wanted.keys() - _user_sail_env:
            os.environ.pop(name, None)  # an unbounded pool: none of an earlier server's
        for name, value in wanted.items():
            if name not in _user_sail_env:
                os.environ[name] = value
        if conf.spill_dir:
            Path(conf.spill_dir).mkdir(parents=True, exist_ok=True)
        from pysail.spark import SparkConnectServer

        server = SparkConnectServer(ip="127.0.0.1", port=0)
        server.start(background=True)
        _servers[slot] = server
    host, port = _servers[slot].listening_address
    return f"sc://{host}:{port}"


# PySpark's DataFrame debugging (on by default) records the Python call site of every
# DataFrame and Column call for error messages: a walk up the stack and a failed
# `import IPython` each time, ~0.2 ms a call on a quiet machine, and a night makes ~9,000
# such calls (~2 s of a 40-member night on Sail; on the JVM also a py4j conf read per call).
# Errors still name the failing query and Python's own traceback the line. A static
# setting on a JVM: given at start to the local session and to the Connect servers we
# start (SMALL_LAKE_CONF); a Connect session sets it when the server allows (Sail does).
DEBUGGING_CONF = "spark.python.sql.dataFrameDebugging.enabled"


def _apply_conf(builder: SparkSession.Builder, conf: EngineConf) -> SparkSession.Builder:
    return builder.config("spark.sql.session.timeZone", conf.timezone).config(
        "spark.sql.shuffle.partitions", str(conf.shuffle_partitions)
    )


def debugging_off(session: SparkSession) -> bool:
    """Turn PySpark's DataFrame debugging off for a Connect session; False when the
    server holds it as a static setting (a JVM Spark Connect server: set at its start,
    as ``cdp engine serve-spark`` and our clusters do)."""
    try:
        session.conf.set(DEBUGGING_CONF, "false")
    except Exception as exc:  # the error class depends on the client
        if "CANNOT_MODIFY_STATIC_CONFIG" not in str(exc):
            raise
        log.debug("%s is static on this server: left as the server has it", DEBUGGING_CONF)
        return False
    return True


JARS_DIR = PROJECT_ROOT / ".jars"

# Delta settings for lakes of up to a few million members, on every JVM engine (the local
# session, the Connect servers `cdp engine serve-spark` starts); `engine.spark_conf` wins.
SMALL_LAKE_CONF = {
    # A night writes small tables: many tiny files and tasks cost more than they save.
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    # Delta reads its log with 50 tasks by default (every read of a table whose log moved);
    # a table of a few hundred files needs 2.
    "spark.databricks.delta.snapshotPartitions": "2",
    # VACUUM lists a table's files in this many tasks (Spark's default: 10,000): measured
    # on a 3-file table at a load of ~25 on 2 cores, one VACUUM ran 7,000+ tasks in >10
    # minutes; local tables need a few.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    # No Python call site recorded per DataFrame call (DEBUGGING_CONF, above).
    DEBUGGING_CONF: "false",
}

# Settings of a local JVM session on a small machine (2 cores, a few GB for the driver).
LOCAL_JVM_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "3g",
    **SMALL_LAKE_CONF,
    # Our own lines on the terminal, as with Sail (RUST_LOG=error).
    "spark.log.level": "ERROR",
}

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def local_jvm_conf(conf: EngineConf) -> dict[str, str]:
    """Spark settings of a local JVM session: the small-machine defaults, then ``engine.spark_conf``."""
    return {**LOCAL_JVM_CONF, **conf.spark_conf}


def delta_jars(jars_dir: Path = JARS_DIR) -> list[Path]:
    """The JARs delta-spark needs on top of pyspark's (copied by ``make setup``).

    A clear one-line error when they are missing: nothing is resolved at run time.
    """
    jars = sorted(Path(jars_dir).glob("*.jar"))
    if not any(j.name.startswith("delta-spark_") for j in jars):
        raise RuntimeError(
            f"the Delta JARs for the JVM engine are missing in {jars_dir}: run `make setup`"
        )
    return jars


def local_jvm_session(conf: EngineConf, delta: bool = True) -> SparkSession:
    """A local JVM SparkSession; ``delta=False`` gives plain Spark (for tests of pure transforms)."""
    # A Spark Connect session earlier in this process (or its parent) leaves this
    # flag behind, and with it getOrCreate() insists on a remote session.
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
    os.environ.pop("SPARK_REMOTE", None)
    builder = _apply_conf(SparkSession.builder.master(conf.spark_master).appName("cdp"), conf)
    for key, value in local_jvm_conf(conf).items():
        builder = builder.config(key, value)
    if delta:
        classpath = os.pathsep.join(str(j) for j in delta_jars())
        builder = builder.config("spark.driver.extraClassPath", classpath).config(
            "spark.executor.extraClassPath", classpath
        )
        for key, value in DELTA_CONF.items():
            builder = builder.config(key, value)
        # s3:// and s3a:// lakes through Hadoop's S3A (hadoop-aws JARs from jvm/pom.xml),
        # endpoint and region from the AWS_* variables (jobs.storage).
        from jobs.storage import hadoop_s3a_conf

        for name, value in hadoop_s3a_conf().items():
            builder = builder.config(name, value)
    return builder.getOrCreate()


def get_spark(conf: EngineConf | None = None, joins: str | None = None) -> SparkSession:
    """The process's SparkSession for ``conf`` (created on first use, then reused).

    ``joins`` (Sail only): ``hash`` or ``sort_merge`` for a session whose equi-joins run
    that way (default ``conf.joins``); ignored by the other engines, which plan their own.
    On Sail each pair of pool sizes (``memory_limit_mb``, ``hash_join_memory_limit_mb``)
    has servers of its own; a change of any other setting stops every session first.
    """
    global _session_key
    if conf is None:
        from jobs.config import settings

        conf = settings().engine
    sail = conf.kind == "sail"
    strategy = (joins or conf.joins) if sail else "planned"
    slot: Slot = (
        strategy,
        (conf.memory_limit_mb, conf.hash_join_memory_limit_mb) if sail else None,
    )
    key = (
        conf.kind,
        conf.connect_url,
        conf.timezone,
        conf.shuffle_partitions,
        conf.spark_master,
        tuple(sorted(conf.spark_conf.items())),
    )
    with _lock:
        if _sessions and _session_key != key:
            stop()
        if slot in _sessions:
            return _sessions[slot]
        if conf.kind == "spark":
            session = local_jvm_session(conf, delta=True)
        else:
            url = _start_sail(conf, strategy, slot) if sail else conf.connect_url
            builder = _apply_conf(SparkSession.builder.remote(url), conf)
            # getOrCreate would hand back the other server's session (the default one).
            session = builder.create() if _sessions else builder.getOrCreate()
            # Builder configs are not always applied to an existing remote session.
            session.conf.set("spark.sql.session.timeZone", conf.timezone)
            session.conf.set("spark.sql.shuffle.partitions", str(conf.shuffle_partitions))
            debugging_off(session)
        _sessions[slot], _slot_confs[slot], _session_key = session, conf, key
        log.debug("spark session ready: %s (%s joins)", conf.kind, strategy)
        return session


def step_spark(spark: SparkSession, step: str, hash_join_steps: Collection[str]) -> SparkSession:
    """The session pipeline step ``step`` runs on, given the run's ``spark``: for a step of
    ``hash_join_steps`` (``engine.hash_join_steps``) the hash-join session of the same
    embedded Sail configuration; ``spark`` itself otherwise (other engines, sessions this
    module did not make)."""
    if step not in hash_join_steps:
        return spark
    conf = _embedded_sail_conf(spark)
    return spark if conf is None else get_spark(conf, "hash")


def _embedded_sail_conf(spark: SparkSession) -> EngineConf | None:
    """The configuration of ``spark`` when it is a session of our embedded Sail servers
    (with the pools of its server); None for other engines and for sessions this module
    did not make."""
    slot = _slot_of(spark)
    return None if slot is None or slot[1] is None else _slot_confs[slot]


def _slot_of(spark: SparkSession) -> Slot | None:
    with _lock:
        return next((slot for slot, session in _sessions.items() if session is spark), None)


def bigger_pool_spark(spark: SparkSession, pool_mb: int) -> SparkSession | None:
    """A session like ``spark`` (the same joins and settings) on embedded Sail servers
    whose two pools are at least ``pool_mb`` MiB, for a step rerun after a query outgrew
    its pool; None when ``spark`` is not one of our embedded Sail sessions, when its pools
    are that big already or unbounded, or when the user's own SAIL_* variables set the
    pool (they win over ours). Give its servers back with :func:`release_pools`."""
    conf = _embedded_sail_conf(spark)
    slot = _slot_of(spark)
    if conf is None or slot is None or POOL_SIZE_VARIABLE in (_user_sail_env or ()):
        return None
    pools = (conf.memory_limit_mb, conf.hash_join_memory_limit_mb)
    if 0 in pools or min(pools) >= pool_mb:
        return None
    bigger = conf.model_copy(
        update={
            "memory_limit_mb": max(pool_mb, pools[0]),
            "hash_join_memory_limit_mb": max(pool_mb, pools[1]),
        }
    )
    return get_spark(bigger, slot[0])


def release_pools(spark: SparkSession, keep: SparkSession) -> None:
    """Stop the sessions and servers of ``spark``'s pool sizes (a bigger_pool_spark
    session: its server and the other strategy's one its step may have started), unless
    they are ``keep``'s."""
    slot, kept = _slot_of(spark), _slot_of(keep)
    if slot is None or slot[1] is None or (kept is not None and kept[1] == slot[1]):
        return
    with _lock:
        for other in [s for s in _sessions if s[1] == slot[1]]:
            _stop_slot(other)


def parquet_options(spark: SparkSession) -> dict[str, str]:
    """Options for a Parquet write (intermediates, staged rows) on ``spark``.

    On the embedded Sail servers: ``compression`` ``zstd``. Sail 0.7.2 writes ZSTD either
    way, but a write that names it took 1.1-1.6 s where the default took 1.8-3.3 s (the
    1M identity intermediates of 3.9-4.7M rows, files 2-5% smaller too); Sail ignores
    the session's ``spark.sql.parquet.compression.codec``. Other engines keep their
    default. Delta writes are not concerned (Sail's Delta writer ignores the option)."""
    return {"compression": "zstd"} if _embedded_sail_conf(spark) is not None else {}


def stop() -> None:
    """Stop the sessions and the embedded servers (idempotent)."""
    global _session_key
    for slot in list(_sessions) + [s for s in _servers if s not in _sessions]:
        _stop_slot(slot)
    _session_key = None


def _stop_slot(slot: Slot) -> None:
    session, server = _sessions.pop(slot, None), _servers.pop(slot, None)
    _slot_confs.pop(slot, None)
    for thing in (session, server):
        try:
            if thing is not None:
                thing.stop()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
