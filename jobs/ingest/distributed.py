"""Parse landing files on the engine's executors, for an engine that is a cluster.

The embedded engine parses in this process (a process pool for big batches, see
jobs.ingest.job.parse_files): on one machine that is fastest. On a cluster that
would make every executor wait on the driver's machine, so there the same work is
a Spark job: a DataFrame with one row per group of files, and ``mapInArrow`` runs
the same group parser (``jobs.ingest.job.parse_group``) on the executors. Each task
writes its group's staged Parquet file itself and returns one statistics row per
file, so the staged rows, the quarantine and the manifest are the same either way
(tests/ingest/test_distributed.py).

Executors open the landing files and write the staging folder by path: both must be
on storage every node sees under the same path, and the project must be importable
by the executors' Python (jobs.spark_cluster sets ``spark.executorEnv.PYTHONPATH``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import orjson
import pyarrow as pa
from pyspark.sql import SparkSession

from jobs.config import Settings

# One task per group of files: small groups spread a night's files over the executors.
EXECUTOR_GROUP_BYTES = 8 << 20
STATS_SCHEMA = pa.schema(
    [
        pa.field("_source_file", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("encoding", pa.string()),
        pa.field("error", pa.string()),
        pa.field("rows", pa.int64()),
    ]
)
STATS_DDL = (
    "_source_file string, size_bytes long, sha256 string, encoding string, error string, rows long"
)

GroupTask = tuple[list[tuple[str, str, str, str]], str]  # (files, staged Parquet path)
GroupParser = Callable[[GroupTask], list[dict]]


def parse_place(settings: Settings) -> Literal["driver", "executors"]:
    """Where landing files are parsed: ``ingest.parse_on``, or by engine when ``auto``.

    ``auto`` chooses the executors for a remote Connect server (it may be a cluster)
    and for a JVM session whose master is not ``local``; the driver otherwise.
    """
    chosen = settings.ingest.parse_on
    if chosen != "auto":
        return chosen
    engine = settings.engine
    if engine.kind == "connect":
        return "executors"
    if engine.kind == "spark" and not engine.spark_master.startswith("local"):
        return "executors"
    return "driver"


def _run_tasks(parser: GroupParser) -> Callable[[Iterator[pa.RecordBatch]], Iterator]:
    """The ``mapInArrow`` function: parse each task row's group, yield its file statistics."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for task in batch.to_pylist():
                files = [tuple(f) for f in orjson.loads(task["files"])]
                stats = parser((files, task["out"]))
                yield pa.RecordBatch.from_pylist(stats, schema=STATS_SCHEMA)

    return run


def parse_on_executors(
    spark: SparkSession, tasks: list[GroupTask], parser: GroupParser
) -> list[dict]:
    """Run ``parser`` over ``tasks`` as one Spark job, one partition per task.

    Returns the statistics rows (one per file) in the order of the tasks' files.
    """
    rows = [(i, orjson.dumps(files).decode(), out) for i, (files, out) in enumerate(tasks)]
    frame = spark.createDataFrame(rows, "task long, files string, out string")
    stats = (
        frame.repartition(len(tasks), "task").mapInArrow(_run_tasks(parser), STATS_DDL).collect()
    )
    by_file = {r["_source_file"]: r.asDict() for r in stats}
    return [by_file[rel] for files, _ in tasks for _, _, rel, _ in files]
