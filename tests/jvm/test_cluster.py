"""The whole pipeline on Apache Spark outside the process, compared with the embedded Sail run.

1. In ``make test``: a Spark Connect server (Spark 4.1 + Delta) on a standalone cluster
   (a master and two workers, separate JVMs with their own work folders), started by the
   test. ``CDP_ENGINE=connect`` runs night 1 of the parity scenario (tests/jvm/scenario.py:
   the first load, with a POS day held back and two members sharing a phone) against it
   from fresh ``cdp`` processes, as an Airflow worker would; ingest parses the landing
   files on the executors. Every table (rows, member ids) and export must equal the Sail
   run's. Opted in (``make test-jvm``), night 2 follows: the late day, a re-sent file, a
   merge and a split, compared again.
2. Opt-in: the same server in ``local[2]`` mode runs one night.

Every JVM is started and stopped by the fixtures; no process of theirs is left behind,
not even when the pytest worker is killed (a watchdog per daemon, jobs.spark_watchdog).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from jobs.config import PROJECT_ROOT
from jobs.spark_cluster import (
    ServerOptions,
    start_cluster,
    start_connect_server,
    stop_cluster,
    stop_connect_server,
)
from tests.jvm.conf import TINY_SERVER_CONF
from tests.jvm.lakes import compare_exports, compare_lakes, member_ids
from tests.jvm.scenario import Calendar, JvmSide, Scenario

pytestmark = [
    pytest.mark.jvm,
    # A JVM Spark job costs ~0.1-0.3 s on an idle machine and the pipeline runs a few
    # hundred of them: minutes per run, far more on a loaded one.
    pytest.mark.timeout(3600),
    pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17"),
    pytest.mark.skipif(
        not list((PROJECT_ROOT / ".jars").glob("delta-spark*.jar")), reason="run `make setup`"
    ),
]
# The Connect server in local mode is a subset of the cluster run: opt-in.
OPT_IN = pytest.mark.skipif(
    os.environ.get("CDP_TEST_CLUSTER") != "1",
    reason="the Connect server in local mode is opt-in: CDP_TEST_CLUSTER=1 (make test-jvm)",
)

END = dt.date(2026, 11, 7)
PII_KEY = "00" * 32  # one key for every run, so hashed identities compare
# A few rows per table: Delta's log in 2 tasks, not 50; no code generation (tests/jvm/conf.py).
SMALL_DATA = {
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    **TINY_SERVER_CONF,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pipeline(landing: Path, out: Path, engine: str, url: str | None = None) -> Path:
    """``cdp run --date END`` in a new process on ``engine``; returns the run's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "SPARK_"))}
    env.update(
        CDP_ENGINE=engine,
        CDP_LANDING=str(landing),
        CDP_LAKE=str(out / "lake"),
        CDP_EXPORTS=str(out / "exports"),
        CDP_WORK=str(out / "work"),
        CDP_PII_KEY=PII_KEY,
    )
    if url:
        env["CDP_CONNECT_URL"] = url
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", "--date", END.isoformat()],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return out


def _left_behind(state_dir: Path) -> list[str]:
    """Processes still running from ``state_dir`` (their working folder or arguments)."""
    left = []
    for p in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = p.info["cwd"] or ""
        args = " ".join(p.info["cmdline"] or [])
        if cwd.startswith(str(state_dir)) or str(state_dir) in args:
            left.append(f"{p.info['pid']}: {args[:120]}")
    return left


@pytest.fixture(scope="module")
def zone(tmp_path_factory) -> Path:
    from jobs.generate.landing import generate_landing

    landing = tmp_path_factory.mktemp("zone") / "landing"
    generate_landing(landing, members=40, days=3, seed=2027, end_date=END, workers=1)
    return landing


@pytest.fixture(scope="module")
def sail_run(zone, tmp_path_factory) -> Path:
    return run_pipeline(zone, tmp_path_factory.mktemp("sail") / "run", "sail")


@pytest.fixture()
def connect_server(tmp_path):
    """A Spark Connect server; yields a function starting it with a master."""
    state = tmp_path / "spark"

    def start(master: str) -> str:
        opts = ServerOptions(
            port=_free_port(), master=master, shuffle_partitions=4, extra_conf=SMALL_DATA
        )
        return start_connect_server(opts, state, owner_pid=os.getpid())

    yield start
    stop_connect_server(state)
    assert not _left_behind(state), _left_behind(state)


@pytest.fixture()
def cluster(tmp_path):
    """A standalone master and two workers (1 core, 1 GB each); yields the master URL."""
    state = tmp_path / "cluster"
    # Stopped here, or by a watchdog if this worker is killed before the teardown runs.
    url = start_cluster(
        state, workers=2, port=_free_port(), worker_memory="1g", owner_pid=os.getpid()
    )
    yield url, state
    stop_cluster(state)
    assert not _left_behind(state), _left_behind(state)


def _assert_same(sail: Path, other: Path) -> None:
    """Every table and export of the two runs holds the same rows (tests/jvm/lakes.py)."""
    assert member_ids(sail / "lake") == member_ids(other / "lake")
    assert compare_lakes(sail / "lake", other / "lake") == []
    assert list((sail / "exports").rglob("*.csv")), "the Sail run wrote no exports"
    assert compare_exports(sail / "exports", other / "exports") == []


@OPT_IN
def test_connect_server_run_matches_sail(zone, sail_run, connect_server, tmp_path):
    url = connect_server("local[2]")
    run = run_pipeline(zone, tmp_path / "run", "connect", url)
    _assert_same(sail_run, run)


def test_parity_nights_on_a_standalone_cluster_match_sail(cluster, connect_server, tmp_path):
    """Night 1 of the parity scenario on a Connect server over two workers (in ``make
    test``); night 2 (late day, re-sent file, merge, split) too when opted in."""
    from jobs.generate.landing import generate_landing

    master, state = cluster
    cal = Calendar(end=END, days=6)
    zone = tmp_path / "zone"
    generate_landing(zone, members=30, days=cal.days, seed=11, end_date=END, workers=1)
    side = JvmSide("connect", url=connect_server(master))
    scenario = Scenario(tmp_path / "scenario", zone, cal, side)
    scenario.night1()
    if os.environ.get("CDP_TEST_CLUSTER") == "1":
        scenario.night2()
    print(f"\nparity on a standalone cluster, 30 members x 6 days, seconds: {scenario.seconds}")
    # Both workers ran executors, each in its own work folder.
    for worker in ("worker-1", "worker-2"):
        assert list((state / worker / "work").glob("app-*/*/stderr")), worker
