"""`make test`'s two workers get whole groups: every test of a module on one worker.

pytest-xdist's own ``--dist loadgroup`` stopped grouping on pytest 9.2 (its group marks
are read off node ids it can no longer rewrite, pytest-dev/pytest-xdist#1386): a module's
tests were spread over both workers, each building the module's lakes. tests/conftest.py
schedules the groups itself; here a small suite with the same hooks runs on two workers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from jobs.config import PROJECT_ROOT

CONFTEST = "from tests.conftest import *  # noqa: F403 (the suite's hooks)\n"
MODULE = "def test_{i}():\n    pass\n"


def test_each_module_runs_whole_on_one_worker(tmp_path: Path):
    (tmp_path / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    for name in ("test_a.py", "test_b.py", "test_c.py"):
        (tmp_path / name).write_text("".join(MODULE.format(i=i) for i in range(6)))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
         "no:cacheprovider", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = re.findall(r"\[(gw\d)\] .*PASSED (test_\w)\.py::", proc.stdout)
    assert len(ran) == 18, proc.stdout[-3000:]
    workers = {module: {gw for gw, m in ran if m == module} for _, module in ran}
    assert all(len(gws) == 1 for gws in workers.values()), workers
    assert {gw for gw, _ in ran} == {"gw0", "gw1"}  # and both workers had work
