"""Run by test_s3_jvm.py in its own interpreter: jobs.lake.Lake on a local JVM
SparkSession with delta-spark and S3A (the JARs of jvm/pom.xml in .jars/), on the lake
``sys.argv[1]`` (an s3:// URI). Exits non-zero on the first difference."""

from __future__ import annotations

import sys
from pathlib import Path

from pyspark.sql import SparkSession

from jobs.config import PROJECT_ROOT
from jobs.lake import Lake
from jobs.storage import hadoop_s3a_conf


def jvm_session() -> SparkSession:
    jars = sorted(str(p) for p in Path(PROJECT_ROOT, ".jars").glob("*.jar"))
    builder = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.jars", ",".join(jars))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    )
    for name, value in hadoop_s3a_conf().items():
        builder = builder.config(name, value)
    return builder.getOrCreate()


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
    spark.stop()
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
