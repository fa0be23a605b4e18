"""Run the `cdp` command line in a subprocess, the way an operator or Airflow does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from jobs.config import PROJECT_ROOT

TEST_KEY = "0123456789abcdef0123456789abcdef"
INGEST_STEPS = "ingest_pos,ingest_web,ingest_crm,quality"


def cdp_env(base: Path, **extra: str) -> dict[str, str]:
    """Environment with every location under ``base`` and a fixed PII key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(
        CDP_LANDING=str(base / "landing"),
        CDP_LAKE=str(base / "lake"),
        CDP_EXPORTS=str(base / "exports"),
        CDP_WORK=str(base / "work"),
        CDP_PII_KEY=TEST_KEY,
        # Data Docs only for a run failing its quality step: these runs test the lake, and
        # rendering costs each ~4-5 s of CPU (tests/ingest/test_quality.py tests both).
        CDP_DATA_DOCS="on_failure",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def run_cdp(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess:
    """``cdp <args>`` in a fresh interpreter; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Reaps ``cdp`` with wait4 and writes its peak RSS (KiB) to argv[1]; exit code passed on.
_PEAK_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "jobs.cli", *sys.argv[2:]])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_cdp_peak(
    args: list[str], env: dict[str, str], timeout: float = 600
) -> tuple[subprocess.CompletedProcess, int]:
    """``cdp <args>`` like :func:`run_cdp`, plus that process's own peak RSS in bytes.

    A child's ``ru_maxrss`` also counts the memory of whoever forked it (Linux
    records the pre-exec high-water mark), and pytest with its embedded engine
    is large; so a small wrapper process starts ``cdp`` and reports its peak.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as peak:
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK_WRAPPER, peak.name, *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        kib = int(peak.read() or 0)
    return proc, kib * 1024  # ru_maxrss is in KiB on Linux


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The failure message: non-zero exit, no traceback, one ``cdp:`` line on stderr."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("cdp")]
    assert len(lines) == 1, proc.stderr
    return lines[0]
