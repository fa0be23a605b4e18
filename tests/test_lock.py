"""The lake lock: a second writer is refused, from any directory; a killed holder does not keep it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.lock import LakeBusy, lake_lock

HOLD = """
import sys, time
from pathlib import Path
from jobs.lock import lake_lock
with lake_lock(Path(sys.argv[1]), "holder-run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_run_refused_and_dead_holder_releases(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    holder_cwd = tmp_path / "airflow-worker-1"
    holder_cwd.mkdir()
    # The holder names the lake relative to its own working directory, as a worker would.
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, "../lake"],
        cwd=holder_cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert (lake / "_cdp" / "writer.lock").exists()
        monkeypatch.chdir(tmp_path)  # another directory, another spelling of the same lake
        with pytest.raises(LakeBusy, match=r"holder-run"):
            with lake_lock(Path("lake"), "second"):
                pass
        os.kill(proc.pid, signal.SIGKILL)  # dies without any cleanup
        proc.wait(timeout=10)
        deadline = time.time() + 5
        while True:
            try:
                with lake_lock(lake, "third"):
                    break
            except LakeBusy:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        proc.kill()


def test_reentrant_in_one_process(tmp_path):
    with lake_lock(tmp_path / "lake", "a"):
        with lake_lock(tmp_path / "lake", "a"):
            pass
    with lake_lock(tmp_path / "lake", "b"):
        pass
