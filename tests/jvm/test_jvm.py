import os
import shutil
import subprocess
import sys

import pytest

from jobs.config import PROJECT_ROOT


@pytest.mark.jvm
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17 for the local JVM session")
def test_pure_transforms_run_on_plain_spark():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.jvm.transforms_on_jvm"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "FAILED" not in proc.stdout
