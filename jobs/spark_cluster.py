"""Apache Spark outside this process: a Spark Connect server and a standalone cluster.

Everything is started from the pyspark distribution installed in the venv (its
``bin/spark-submit`` and ``bin/spark-class``) with the Delta JARs that ``make setup``
copied into ``.jars/``; nothing is downloaded at run time.

* :func:`start_connect_server`: ``SparkConnectServer`` with the Delta extensions and
  catalog and the pipeline's session time zone. ``CDP_ENGINE=connect`` with
  ``CDP_CONNECT_URL=sc://127.0.0.1:<port>`` then runs the pipeline from another
  process (an Airflow worker, a shell).
* :func:`start_cluster`: a standalone master and N workers, each its own JVM with its
  own work folder; a Connect server with ``master=spark://127.0.0.1:7077`` (or
  ``CDP_ENGINE=spark`` with ``engine.spark_master``) runs its queries there.

Each daemon runs in its own process group, with a pid file and a log under a state
folder, so ``stop_*`` (or a test fixture) ends it and every child it spawned
(executors, Python workers); one started with ``owner_pid`` is also stopped when that
process dies, however it dies (jobs.spark_watchdog). What executors need from the driver's machine is
passed explicitly: the Python of this venv and the project on ``PYTHONPATH`` (the
ingest step's parsing runs there, see jobs.ingest.distributed). The lake, the
landing zone and the work folder must be paths every node sees the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from jobs.config import PROJECT_ROOT
from jobs.engine import SMALL_LAKE_CONF
from jobs.processes import alive, kill_group
from jobs.storage import hadoop_s3a_conf

JARS_DIR = PROJECT_ROOT / ".jars"
CONNECT_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
HOST = "127.0.0.1"


class SparkDaemonError(RuntimeError):
    """A Spark daemon could not be started (the message ends with its log's tail)."""


def spark_home() -> Path:
    """The pyspark distribution (its bin/, jars/) this venv runs."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def delta_jars(jars_dir: Path = JARS_DIR) -> list[Path]:
    """The JARs of jvm/pom.xml that ``make setup`` resolved; a clear error when missing."""
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(j.name.startswith("delta-spark") for j in jars):
        raise SparkDaemonError(f"no delta-spark JAR in {jars_dir}: run `make setup` first")
    return jars


def daemon_env(memory: str = "256m") -> dict[str, str]:
    """Environment of every daemon: loopback only, this venv's Python, the project importable.

    ``memory`` is the daemon's heap (the launcher gives a Connect server this, not
    ``--driver-memory``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")
    }
    python_path = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(":") if p]
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP=HOST,
        PYSPARK_PYTHON=sys.executable,
        PYTHONPATH=":".join(python_path),
        SPARK_DAEMON_MEMORY=memory,
    )
    return env


@dataclass(frozen=True)
class ServerOptions:
    """What a Connect server runs with (defaults fit a 2-core laptop)."""

    port: int = 15002
    master: str = "local[2]"
    timezone: str = "Asia/Shanghai"
    shuffle_partitions: int = 8
    driver_memory: str = "2g"
    executor_memory: str = "1g"
    # Any other Spark settings, e.g. {"spark.databricks.delta.snapshotPartitions": "2"}
    # for small tables (Delta reads its log in 50 tasks by default).
    extra_conf: dict[str, str] = field(default_factory=dict)


def executor_python_conf() -> dict[str, str]:
    """Spark settings that let executors run the project's Python (the ingest step parses
    landing files there): this venv's interpreter, the project on ``PYTHONPATH``. Also
    what a JVM session (``CDP_ENGINE=spark``) with a non-local master needs."""
    return {
        "spark.pyspark.python": sys.executable,
        "spark.executorEnv.PYTHONPATH": str(PROJECT_ROOT),
    }


def connect_server_argv(opts: ServerOptions) -> list[str]:
    """``spark-submit`` arguments of a Connect server with Delta (see module docstring)."""
    conf = {
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(opts.port),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.session.timeZone": opts.timezone,
        "spark.sql.shuffle.partitions": str(opts.shuffle_partitions),
        "spark.executor.memory": opts.executor_memory,
        "spark.ui.enabled": "false",
        **executor_python_conf(),
        # s3:// lakes through S3A, endpoint and region from this environment's AWS_* variables
        # (credentials stay in the environment, which the server and executors inherit).
        **hadoop_s3a_conf(),
        **SMALL_LAKE_CONF,
        # The server's log (connect.log) says what failed, not every task it ran.
        "spark.log.level": "WARN",
        **opts.extra_conf,
    }
    argv = [
        str(spark_home() / "bin" / "spark-submit"),
        "--class",
        CONNECT_CLASS,
        "--name",
        "cdp-spark-connect",
        "--master",
        opts.master,
        "--driver-memory",
        opts.driver_memory,
        "--jars",
        ",".join(str(j) for j in delta_jars()),
    ]
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return argv


def master_argv(port: int) -> list[str]:
    return [
        str(spark_home() / "bin" / "spark-class"),
        MASTER_CLASS,
        "--host",
        HOST,
        "--port",
        str(port),
        "--webui-port",
        "0",
    ]


def worker_argv(master_url: str, work_dir: Path, cores: int, memory: str) -> list[str]:
    return [
        str(spark_home() / "bin" / "spark-class"),
        WORKER_CLASS,
        "--host",
        HOST,
        "--cores",
        str(cores),
        "--memory",
        memory,
        "--work-dir",
        str(work_dir),
        "--webui-port",
        "0",
        master_url,
    ]


def _pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def log_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.log"


def _log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _wait(proc: subprocess.Popen, ready, name: str, log: Path, timeout_s: float) -> None:
    """Wait until ``ready()``; stop the daemon and raise with its log if it dies or hangs."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise SparkDaemonError(f"{name} exited with {proc.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            kill_group(proc.pid)
            raise SparkDaemonError(f"{name} not ready after {timeout_s:.0f}s:\n{_log_tail(log)}")
        time.sleep(0.5)


def start_daemon(
    name: str,
    argv: list[str],
    state_dir: Path,
    ready,
    timeout_s: float = 300,
    memory: str = "256m",
    owner_pid: int | None = None,
) -> int:
    """Start ``argv`` in its own process group, logging to ``<state_dir>/<name>.log``;
    wait for ``ready()`` and write ``<name>.pid``. Returns the pid. With ``owner_pid``,
    the group is also stopped when that process dies (jobs.spark_watchdog)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = _pid_file(state_dir, name)
    if pid_file.exists() and alive(int(pid_file.read_text())):
        raise SparkDaemonError(f"{name} already runs (pid {pid_file.read_text().strip()})")
    log = log_file(state_dir, name)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=daemon_env(memory),
            cwd=state_dir,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    if owner_pid is not None:
        watch_group(owner_pid, proc.pid)
    try:
        _wait(proc, ready, name, log, timeout_s)
    except SparkDaemonError:
        pid_file.unlink(missing_ok=True)
        raise
    return proc.pid


def watch_group(owner_pid: int, pgid: int) -> subprocess.Popen:
    """A detached jobs.spark_watchdog that stops group ``pgid`` once ``owner_pid`` dies."""
    argv = [sys.executable, "-m", "jobs.spark_watchdog", "--owner", str(owner_pid),
            "--group", str(pgid)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        argv, cwd="/", env=env, start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_daemon(name: str, state_dir: Path) -> bool:
    """Stop the daemon ``name`` of ``state_dir``; False when none was running."""
    pid_file = _pid_file(state_dir, name)
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    running = alive(pid)
    if running:
        kill_group(pid)
    pid_file.unlink(missing_ok=True)
    return running


def start_connect_server(
    opts: ServerOptions, state_dir: Path, timeout_s: float = 300, owner_pid: int | None = None
) -> str:
    """Start a Connect server (see :func:`connect_server_argv`); return its sc:// URL.
    ``owner_pid``: stop it when that process dies (see :func:`start_daemon`)."""
    if _port_open(opts.port):
        raise SparkDaemonError(f"port {opts.port} is in use: choose another with --port")
    argv = connect_server_argv(opts)
    ready = lambda: _port_open(opts.port)  # noqa: E731
    start_daemon(
        "connect", argv, state_dir, ready, timeout_s, memory=opts.driver_memory,
        owner_pid=owner_pid,
    )  # fmt: skip
    return f"sc://{HOST}:{opts.port}"


def stop_connect_server(state_dir: Path) -> bool:
    return stop_daemon("connect", state_dir)


def _registered(log: Path) -> bool:
    return log.exists() and "Successfully registered with master" in log.read_text(errors="replace")


def start_cluster(
    state_dir: Path,
    workers: int = 2,
    port: int = 7077,
    worker_cores: int = 1,
    worker_memory: str = "1g",
    timeout_s: float = 300,
    owner_pid: int | None = None,
) -> str:
    """Start a standalone master and ``workers`` workers (own JVMs and work folders);
    return the master URL once every worker has registered. ``owner_pid``: stop them
    when that process dies (see :func:`start_daemon`)."""
    if _port_open(port):
        raise SparkDaemonError(f"port {port} is in use: choose another with --port")
    url = f"spark://{HOST}:{port}"
    start_daemon(
        "master", master_argv(port), state_dir, lambda: _port_open(port), timeout_s,
        owner_pid=owner_pid,
    )  # fmt: skip
    try:
        for i in range(1, workers + 1):
            name = f"worker-{i}"
            work = state_dir / name / "work"
            work.mkdir(parents=True, exist_ok=True)
            log = log_file(state_dir, name)
            argv = worker_argv(url, work, worker_cores, worker_memory)
            start_daemon(
                name, argv, state_dir, lambda log=log: _registered(log), timeout_s,
                owner_pid=owner_pid,
            )  # fmt: skip
    except SparkDaemonError:
        stop_cluster(state_dir)
        raise
    return url


def stop_cluster(state_dir: Path) -> list[str]:
    """Stop the workers, then the master, of ``state_dir``; return the names stopped."""
    names = sorted(p.stem for p in state_dir.glob("worker-*.pid")) + ["master"]
    return [n for n in names if stop_daemon(n, state_dir)]
