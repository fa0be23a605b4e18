"""What one small Delta operation costs on a warm local JVM session (CDP_ENGINE=spark).

    .venv/bin/python bench/jvm_costs.py [--repeat 15] [--conf key=value ...]

On a tiny lake a JVM night costs its number of queries and commits, not its rows; this
measures the unit prices: a one-row append, a count, a small join + aggregate written to
Parquet, a small collect. Each is run 3 times to warm up, then ``--repeat`` times; printed
per operation: wall ms and CPU ms of the JVM (the Python process's child), which a loaded
machine inflates less than wall time. ``--conf`` adds Spark settings to the session's
(e.g. ``spark.sql.codegen.wholeStage=false``) to compare settings within one machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

import jobs.engine as engine  # noqa: E402
from jobs.config import EngineConf  # noqa: E402


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's children: the JVM of a local session."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def operations(spark: SparkSession, table: str, out: str) -> dict[str, Callable[[int], object]]:
    def delta() -> object:
        return spark.read.format("delta").load(table)

    def join_aggregate(_: int) -> None:
        per_key = delta().groupBy("k").agg(F.max("id").alias("m"))
        joined = delta().join(per_key, "k").groupBy("k").agg(F.sum("m").alias("s"))
        joined.write.mode("overwrite").parquet(out)

    return {
        "append one row": lambda i: spark.range(i, i + 1)
        .withColumn("k", F.col("id") % 7)
        .write.format("delta")
        .mode("append")
        .save(table),
        "count": lambda _: delta().count(),
        "join + aggregate to parquet": join_aggregate,
        "small collect": lambda _: delta().groupBy("k").count().collect(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.conf)
    spark = engine.get_spark(EngineConf(kind="spark", shuffle_partitions=8, spark_conf=extra))
    base = tempfile.mkdtemp(prefix="jvm_costs_")
    try:
        table = f"{base}/t"
        spark.range(100).withColumn("k", F.col("id") % 7).write.format("delta").save(table)
        print(f"{'operation':28} {'wall ms':>8} {'JVM CPU ms':>11}")
        for name, run in operations(spark, table, f"{base}/p").items():
            for i in range(3):
                run(i)
            wall, cpu = time.perf_counter(), children_cpu_seconds()
            for i in range(args.repeat):
                run(i)
            wall_ms = 1000 * (time.perf_counter() - wall) / args.repeat
            cpu_ms = 1000 * (children_cpu_seconds() - cpu) / args.repeat
            print(f"{name:28} {wall_ms:8.0f} {cpu_ms:11.0f}", flush=True)
    finally:
        engine.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
