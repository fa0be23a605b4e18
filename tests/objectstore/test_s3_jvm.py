"""Delta on S3 through Hadoop's S3A on a local JVM SparkSession (CDP_ENGINE=spark)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs import storage
from jobs.config import PROJECT_ROOT


@pytest.mark.jvm
@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17 for the local JVM session")
@pytest.mark.skipif(
    not list(Path(PROJECT_ROOT, ".jars").glob("hadoop-aws-*.jar")),
    reason="needs the S3A JARs of jvm/pom.xml in .jars (make jars)",
)
def test_lake_on_s3_through_s3a_on_jvm_spark(bucket, s3_env):
    root = f"s3://{bucket}/lake"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.objectstore.lake_on_jvm", root],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    # What the JVM wrote is a Delta table that delta-rs (Sail's side) reads on the store.
    table = DeltaTable(
        storage.join(root, "gold/jvm_tags"), storage_options=storage.delta_storage_options(root)
    )
    assert sorted(table.to_pyarrow_table().column("member_id").to_pylist()) == ["M1", "M2", "M3"]
