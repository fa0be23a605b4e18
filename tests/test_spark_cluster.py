"""jobs.spark_cluster without starting a JVM: the commands it builds and its stop story."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobs.spark_cluster import (
    PROJECT_ROOT,
    ServerOptions,
    SparkDaemonError,
    connect_server_argv,
    delta_jars,
    start_daemon,
    stop_daemon,
    worker_argv,
)


def _conf(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    return dict(p.split("=", 1) for p in pairs)


@pytest.mark.skipif(not list((PROJECT_ROOT / ".jars").glob("*.jar")), reason="make setup")
def test_connect_server_has_delta_the_time_zone_and_the_project_on_executors():
    argv = connect_server_argv(ServerOptions(port=15123, master="spark://127.0.0.1:7077"))
    conf = _conf(argv)
    assert argv[0].endswith("bin/spark-submit")
    assert argv[argv.index("--master") + 1] == "spark://127.0.0.1:7077"
    assert "delta-spark" in argv[argv.index("--jars") + 1]
    assert conf["spark.connect.grpc.binding.port"] == "15123"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.session.timeZone"] == "Asia/Shanghai"
    assert conf["spark.executorEnv.PYTHONPATH"] == str(PROJECT_ROOT)
    assert conf["spark.pyspark.python"] == sys.executable


@pytest.mark.skipif(not list((PROJECT_ROOT / ".jars").glob("*.jar")), reason="make setup")
def test_connect_server_reads_s3_lakes_at_the_environments_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "cn-north-1")
    opts = ServerOptions(extra_conf={"spark.hadoop.fs.s3a.path.style.access": "false"})
    conf = _conf(connect_server_argv(opts))
    assert conf["spark.hadoop.fs.s3.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "cn-north-1"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "false"  # engine.spark_conf wins


def test_missing_jars_say_run_make_setup(tmp_path):
    with pytest.raises(SparkDaemonError, match="make setup"):
        delta_jars(tmp_path)


def test_workers_get_their_own_work_folder(tmp_path):
    argv = worker_argv("spark://127.0.0.1:7077", tmp_path / "w1", cores=1, memory="1g")
    assert argv[argv.index("--work-dir") + 1] == str(tmp_path / "w1")
    assert argv[-1] == "spark://127.0.0.1:7077"


def test_a_daemon_and_its_children_are_stopped_by_its_pid_file(tmp_path: Path):
    # A shell with a child, like spark-class with its JVM and Python workers.
    script = "sleep 300 & echo ready > ready; wait"
    pid = start_daemon(
        "fake", ["bash", "-c", script], tmp_path, lambda: (tmp_path / "ready").exists()
    )
    child = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    assert child
    assert stop_daemon("fake", tmp_path) is True
    assert subprocess.run(["pgrep", "-g", str(pid)], capture_output=True).returncode == 1
    assert stop_daemon("fake", tmp_path) is False


def test_a_daemon_that_dies_at_start_reports_its_log(tmp_path: Path):
    with pytest.raises(SparkDaemonError, match="boom"):
        start_daemon("bad", ["bash", "-c", "echo boom; exit 3"], tmp_path, lambda: False)
    assert not (tmp_path / "bad.pid").exists()


def _within(seconds: float, done) -> bool:
    """True once ``done()`` is, polling for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _group_gone(pgid: int, within_s: float) -> bool:
    gone = lambda: subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 1  # noqa: E731
    return _within(within_s, gone)


def _watchdogs(pgid: int) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "jobs.spark_watchdog" in (p.info["cmdline"] or []) and str(pgid) in p.info["cmdline"]
    ]


def test_a_daemon_whose_owner_is_killed_is_stopped_with_its_children(tmp_path: Path):
    """A test fixture's JVMs must not outlive a killed pytest worker (SIGKILL: no
    teardown runs): the watchdog stops the group once its owner is gone."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    script = "sleep 300 & echo ready > ready; wait"
    ready = lambda: (tmp_path / "ready").exists()  # noqa: E731
    pid = start_daemon("owned", ["bash", "-c", script], tmp_path, ready, owner_pid=owner.pid)
    assert not _group_gone(pid, within_s=2.5), "stopped while its owner runs"
    owner.kill()
    owner.wait()
    assert _group_gone(pid, within_s=30), "the daemon outlived its owner"
    assert _within(10, lambda: not _watchdogs(pid)), "the watchdog did not leave"


def test_the_watchdog_leaves_when_the_daemon_is_stopped_normally(tmp_path: Path):
    script = "sleep 300 & echo ready > ready; wait"
    ready = lambda: (tmp_path / "ready").exists()  # noqa: E731
    pid = start_daemon("owned", ["bash", "-c", script], tmp_path, ready, owner_pid=os.getpid())
    assert _watchdogs(pid)
    assert stop_daemon("owned", tmp_path) is True
    assert _within(10, lambda: not _watchdogs(pid)), "the watchdog did not leave"
