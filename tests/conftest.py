"""Shared fixtures: one embedded Sail session for the whole test session."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from pathlib import Path

import pytest

from jobs.config import PROJECT_ROOT, EngineConf, load_settings, with_paths

# Seconds a group takes in `make test` (pytest --durations=0 on 2 workers, setup included),
# for the groups over ~30 s: the longest are sent first, so the two workers end together.
# Groups not listed count as SLOW_DEFAULT_S when a test is marked slow, else as 0.
# Measured on a fresh clone on 2026-12-01 (tests/group_seconds.py over `make test`'s JUnit
# report, the suite alone on the machine; 1,185 worker-seconds in all, on a faster host
# than the 2,104 of 2026-11-30): what matters is
# the order, longest first.
GROUP_SECONDS = {
    "jvm": 266,
    "tests/privacy/test_erasure.py": 96,
    "tests/reliability/test_crash_safety.py": 89,
    "tests/identity/test_incremental.py": 82,
    "tests/objectstore/test_s3_pipeline.py": 70,
    "tests/e2e/test_demo_history.py": 68,
    "tests/e2e/test_gold_e2e.py": 58,
    "tests/dags/test_nightly_e2e.py": 57,
    "tests/identity/test_job.py": 33,
    "tests/ingest/test_go_live.py": 28,
    "tests/silver/test_backfill.py": 27,
    "tests/identity/test_scored.py": 24,
    "tests/test_sail_cluster.py": 20,
}
SLOW_DEFAULT_S = 30


def xdist_group_of(nodeid: str) -> str:
    """The worker group of a test: ``jvm`` for the JVM tests (tests/jvm/, ``*_jvm.py``), so
    one JVM serves them all; else its module's path, so a module's lakes are built once."""
    path = nodeid.split("::", 1)[0]
    return "jvm" if path.startswith("tests/jvm/") or path.endswith("_jvm.py") else path


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` as this suite means it: whole groups (xdist_group_of) per worker,
    in the order of the collection (pytest_collection_modifyitems).

    pytest-xdist's own loadgroup reads the groups from node ids it rewrites, which pytest
    9.2 no longer allows (pytest-dev/pytest-xdist#1386): every test would go out alone,
    building module lakes on both workers. Its scheduler for whole scopes is used
    instead, with the group as the scope, and without its reordering by test count.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The groups longest first (GROUP_SECONDS), each group's tests in collection order.

    ``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``, see
    pytest_xdist_make_scheduler), a group at a time; sending the longest groups first
    keeps the last minutes from being one long group alone.
    """
    slow = {xdist_group_of(item.nodeid) for item in items if item.get_closest_marker("slow")}

    def cost(item: pytest.Item) -> int:
        group = xdist_group_of(item.nodeid)
        return GROUP_SECONDS.get(group, SLOW_DEFAULT_S if group in slow else 0)

    items.sort(key=lambda item: -cost(item))


@pytest.fixture(scope="session")
def spark():
    from jobs import engine

    session = engine.get_spark(EngineConf(shuffle_partitions=4))
    yield session
    engine.stop()


@pytest.fixture(scope="session")
def jvm(tmp_path_factory):
    """One JVM SparkSession (Apache Spark + Delta) for every JVM test, in a worker process
    (tests/jvm/worker.py); started on first use, and no JVM survives it."""
    if shutil.which("java") is None:
        pytest.skip("needs Java 17 for the JVM engine")
    if not list((PROJECT_ROOT / ".jars").glob("delta-spark*.jar")):
        pytest.skip("the Delta JARs are missing: run `make setup`")
    from tests.jvm.worker import JvmWorker

    worker = JvmWorker(tmp_path_factory.mktemp("jvm") / "worker.log")
    yield worker
    survivors = worker.stop()
    assert survivors == [], f"JVM processes left behind: {survivors}"


@pytest.fixture()
def settings(tmp_path: Path):
    """Settings pointing every location at a fresh temporary folder."""
    base = load_settings(env={})
    s = with_paths(
        base,
        landing=tmp_path / "landing",
        lake=tmp_path / "lake",
        exports=tmp_path / "exports",
        work=tmp_path / "work",
    )
    # The lake's key exists from the start, as a secret would: tests that call a step
    # directly (not through run_step, which checks the key first) need no key generated
    # for a lake that already holds tables (jobs.privacy.pii.load_key refuses that).
    key_file = tmp_path / "work" / "pii.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(secrets.token_hex(32))
    privacy = s.privacy.model_copy(update={"key_file": key_file})
    return s.model_copy(update={"privacy": privacy})


@pytest.fixture()
def make_ctx(spark, settings):
    """Build a RunContext on the shared session for a given date."""
    from jobs.context import RunContext

    def _make(as_of: dt.date | str, **kw) -> RunContext:
        if isinstance(as_of, str):
            as_of = dt.date.fromisoformat(as_of)
        return RunContext(settings=kw.pop("settings", settings), spark=spark, as_of=as_of, **kw)

    return _make
