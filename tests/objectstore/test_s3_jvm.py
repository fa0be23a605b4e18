"""Delta on S3 through Hadoop's S3A on a local JVM SparkSession (CDP_ENGINE=spark)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs import storage
from jobs.config import PROJECT_ROOT

SCRIPT = "import sys\nfrom tests.objectstore.lake_on_jvm import main\nmain(sys.argv[1])\n"


@pytest.mark.jvm
@pytest.mark.skipif(
    not list(Path(PROJECT_ROOT, ".jars").glob("hadoop-aws-*.jar")),
    reason="needs the S3A JARs of jvm/pom.xml in .jars (make jars)",
)
def test_lake_on_s3_through_s3a_on_jvm_spark(bucket, s3_env, jvm):
    root = f"s3://{bucket}/lake"
    answer = jvm.run([root], dict(os.environ), script=SCRIPT)
    assert answer["rc"] == 0 and "OK" in answer["output"], answer["output"][-3000:]
    # What the JVM wrote is a Delta table that delta-rs (Sail's side) reads on the store.
    table = DeltaTable(
        storage.join(root, "gold/jvm_tags"), storage_options=storage.delta_storage_options(root)
    )
    assert sorted(table.to_pyarrow_table().column("member_id").to_pylist()) == ["M1", "M2", "M3"]
