"""Shared fixtures: one embedded Sail session for the whole test session."""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
from pathlib import Path

import pytest

from jobs.config import PROJECT_ROOT, EngineConf, load_settings, with_paths


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each module's tests together, JVM tests together, slow modules first.

    ``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): a
    module's tests share one worker, so its module-scoped lakes are built once, and every
    JVM test shares one worker, so one JVM serves them all. Modules holding a slow
    (end-to-end) test are sent first, so the last minutes are not one long test alone.
    """
    slow = {item.module.__name__ for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module.__name__ not in slow)
    for item in items:
        group = "jvm" if item.get_closest_marker("jvm") else item.module.__name__
        item.add_marker(pytest.mark.xdist_group(group))


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
