"""Run by test_s3_jvm.py in the JVM worker (tests/jvm/worker.py): jobs.lake.Lake on the
local JVM SparkSession with delta-spark and S3A (the JARs of jvm/pom.xml in .jars/), on
the lake ``sys.argv[1]`` (an s3:// URI). Raises on the first difference."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from jobs import engine
from jobs.config import load_settings
from jobs.lake import Lake
from jobs.storage import hadoop_s3a_conf


def jvm_session() -> SparkSession:
    """The process's JVM session, pointed at the S3 server of this environment's AWS_*
    variables (the worker's JVM started before the test's server, so they are set here)."""
    spark = engine.get_spark(load_settings(env={"CDP_ENGINE": "spark"}).engine)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for name, value in hadoop_s3a_conf().items():
        hadoop.set(name.removeprefix("spark.hadoop."), value)
    hadoop.set("fs.s3a.access.key", os.environ["AWS_ACCESS_KEY_ID"])
    hadoop.set("fs.s3a.secret.key", os.environ["AWS_SECRET_ACCESS_KEY"])
    return spark


def main(root: str) -> None:
    spark = jvm_session()
    lake = Lake(spark, root)
    rows = spark.createDataFrame(
        [("M1", "a", 1), ("M2", "b", 2)], "member_id string, tag string, n int"
    )
    lake.overwrite(rows, "gold/jvm_tags", conform_schema=False)
    update = spark.createDataFrame([("M2", "c", 3), ("M3", "d", 4)], rows.schema)
    view = "src"
    update.createOrReplaceTempView(view)
    spark.sql(
        f"MERGE INTO delta.`{lake.path('gold/jvm_tags')}` t USING {view} s "
        "ON t.member_id = s.member_id WHEN MATCHED THEN UPDATE SET * "
        "WHEN NOT MATCHED THEN INSERT *"
    )
    got = sorted(tuple(r) for r in lake.read("gold/jvm_tags").collect())
    assert got == [("M1", "a", 1), ("M2", "c", 3), ("M3", "d", 4)], got
    assert lake.exists("gold/jvm_tags") and lake.version("gold/jvm_tags") == 1
    assert "gold/jvm_tags" in lake.tables(), lake.tables()
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
