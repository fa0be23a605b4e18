"""The JVM tests share one JVM SparkSession, held by one worker process (tests/jvm/worker.py)."""

from __future__ import annotations

import shutil

import pytest

from jobs.config import PROJECT_ROOT


@pytest.fixture(scope="session")
def jvm(tmp_path_factory):
    """The JVM worker (local Apache Spark + Delta), started once; no JVM survives it."""
    if shutil.which("java") is None:
        pytest.skip("needs Java 17 for the JVM engine")
    if not list((PROJECT_ROOT / ".jars").glob("delta-spark*.jar")):
        pytest.skip("the Delta JARs are missing: run `make setup`")
    from tests.jvm.worker import JvmWorker

    worker = JvmWorker(tmp_path_factory.mktemp("jvm") / "worker.log")
    yield worker
    survivors = worker.stop()
    assert survivors == [], f"JVM processes left behind: {survivors}"
