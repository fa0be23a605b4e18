"""The suite reruns a test once for the embedded engine's transport failure, and only for it.

pyproject.toml's ``reruns``/``only_rerun`` (pytest-rerunfailures): a module fixture that
fails once with Sail's "task context not found for operation" is built again and its tests
pass; an ordinary error (here an analysis error) is not rerun. Runs pytest in a subprocess
on a scratch folder with the project's configuration.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from jobs.config import PROJECT_ROOT

SCRATCH_TESTS = """
import pytest
from pathlib import Path

MARK = Path(__file__).with_name("failed-once")


class SparkConnectGrpcException(Exception):
    pass


@pytest.fixture(scope="module")
def lake():
    if not MARK.exists():
        MARK.touch()
        raise SparkConnectGrpcException(
            'status = StatusCode.INTERNAL details = "internal error: task context not found for operation"'
        )
    return "built"


def test_first(lake):
    assert lake == "built"


def test_second(lake):
    assert lake == "built"


def test_analysis_error_is_not_rerun():
    raise SparkConnectGrpcException("[UNRESOLVED_COLUMN] cannot resolve column member_id")
"""


def test_only_the_transport_failure_is_rerun(tmp_path: Path) -> None:
    (tmp_path / "test_scratch.py").write_text(SCRATCH_TESTS)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(PROJECT_ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    summary = proc.stdout.strip().splitlines()[-1]
    assert "2 passed" in summary and "1 failed" in summary and "1 rerun" in summary, proc.stdout
