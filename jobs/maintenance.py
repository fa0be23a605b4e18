"""Delta maintenance: compaction and vacuum of every table of the lake.

Sail has no OPTIMIZE/VACUUM SQL, so there both go through the ``deltalake``
package (delta-rs, no Spark session needed). On the JVM engine
(``engine.kind: spark``) they are Delta's own ``OPTIMIZE`` and ``VACUUM`` SQL
through the session, so the writer of the table also maintains it. Used by
``cdp maintain`` and the weekly ``cdp_maintenance`` DAG. Settings in
``conf/maintenance.yaml``.

Compaction rewrites many small files (one per nightly append or MERGE) into few
large ones in one commit; readers keep seeing the same rows. Vacuum then deletes
files that no version younger than the retention window references, which bounds
how far back ``VERSION AS OF`` time travel can go.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from jobs import storage
from jobs.config import Settings, StrictModel, load_model

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class TableMaintenance(StrictModel):
    compact: bool | None = None
    vacuum: bool | None = None
    retention_hours: int | None = Field(None, ge=0)


class MaintenanceConf(StrictModel):
    compact: bool = True
    target_size_mb: int = Field(128, ge=1)
    vacuum: bool = True
    retention_hours: int = Field(168, ge=0)
    enforce_retention_duration: bool = True
    tables: dict[str, TableMaintenance] = {}


def load_maintenance_conf(conf_dir: Path | None = None) -> MaintenanceConf:
    return load_model("maintenance.yaml", MaintenanceConf, conf_dir)


def lake_tables(lake: Path | str) -> list[str]:
    """Every Delta table under ``lake`` (a folder or an ``s3://`` URI) as ``layer/table``
    (same rule as Lake.tables)."""
    return storage.delta_tables(lake)


@dataclass(frozen=True)
class TablePlan:
    """What to do to one table, after its per-table overrides."""

    compact: bool
    vacuum: bool
    retention_hours: int
    target_bytes: int
    enforce_retention: bool


def table_plan(conf: MaintenanceConf, name: str) -> TablePlan:
    override = conf.tables.get(name, TableMaintenance())
    return TablePlan(
        compact=conf.compact if override.compact is None else override.compact,
        vacuum=conf.vacuum if override.vacuum is None else override.vacuum,
        retention_hours=(
            conf.retention_hours if override.retention_hours is None else override.retention_hours
        ),
        target_bytes=conf.target_size_mb * 1024 * 1024,
        enforce_retention=conf.enforce_retention_duration,
    )


def _delta_rs(path: Path | str):
    from deltalake import DeltaTable

    return DeltaTable(str(path), storage_options=storage.delta_storage_options(path))


def _compact_rs(path: Path | str, plan: TablePlan) -> tuple[int, int]:
    """delta-rs compaction: (files removed, files added)."""
    metrics = _delta_rs(path).optimize.compact(target_size=plan.target_bytes)
    return metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0)


def _vacuum_rs(path: Path | str, plan: TablePlan) -> int:
    """delta-rs vacuum: the number of files deleted."""
    removed = _delta_rs(path).vacuum(
        retention_hours=plan.retention_hours,
        dry_run=False,
        enforce_retention_duration=plan.enforce_retention,
    )
    return len(removed)


def _compact_sql(spark: SparkSession, path: Path | str, plan: TablePlan) -> tuple[int, int]:
    """Delta SQL ``OPTIMIZE`` (bin-packing to the target size): (files removed, files added)."""
    spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(plan.target_bytes))
    metrics = spark.sql(f"OPTIMIZE delta.`{path}`").collect()[0]["metrics"]
    return int(metrics["numFilesRemoved"]), int(metrics["numFilesAdded"])


def _vacuum_sql(spark: SparkSession, path: Path | str, plan: TablePlan) -> int:
    """Delta SQL ``VACUUM ... RETAIN n HOURS``: the number of files deleted.

    VACUUM itself returns only the table path, so the files are listed with DRY RUN
    first (under the lake's writer lock nothing else removes files in between).
    """
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(key, str(plan.enforce_retention).lower())
    try:
        sql = f"VACUUM delta.`{path}` RETAIN {plan.retention_hours} HOURS"
        doomed = spark.sql(f"{sql} DRY RUN").count()
        spark.sql(sql).collect()
    finally:
        spark.conf.unset(key)
    return doomed


def maintain_table(
    path: Path | str, conf: MaintenanceConf, name: str, spark: SparkSession | None = None
) -> str:
    """Compact then vacuum one table; one line saying what was done.

    ``spark``: a JVM Spark session with delta-spark (Delta SQL); None: delta-rs.
    """
    plan = table_plan(conf, name)
    parts = [f"{name}: v{_delta_rs(path).version()}"]
    if plan.compact:
        removed, added = (
            _compact_sql(spark, path, plan) if spark is not None else _compact_rs(path, plan)
        )
        parts.append(f"compacted {removed} -> {added} files")
    if plan.vacuum:
        deleted = _vacuum_sql(spark, path, plan) if spark is not None else _vacuum_rs(path, plan)
        parts.append(f"vacuumed {deleted} files (retention {plan.retention_hours}h)")
    return ", ".join(parts)


def _sql_session(settings: Settings) -> SparkSession | None:
    """The JVM engine's session when the lake is maintained with Delta SQL, else None."""
    if settings.engine.kind != "spark":
        return None
    from jobs.engine import get_spark

    return get_spark(settings.engine)


def maintain_all(settings: Settings, conf: MaintenanceConf | None = None) -> Iterator[str]:
    """Maintain every table under the lake; a failing table is reported, the rest go on.

    Raises at the end when any table failed, so the CLI and the Airflow task fail
    visibly after having done what they could.
    """
    conf = conf or load_maintenance_conf()
    lake = settings.paths.lake
    names = lake_tables(lake)
    if not names:
        yield f"no Delta tables under {lake}"
        return
    spark = _sql_session(settings)
    failed = []
    for name in names:
        try:
            yield maintain_table(storage.join(lake, name), conf, name, spark)
        except Exception as exc:  # noqa: BLE001 - one bad table must not stop the others
            failed.append(name)
            yield f"{name}: FAILED {type(exc).__name__}: {exc}"
    if failed:
        raise RuntimeError(f"maintenance failed for {len(failed)} table(s): {', '.join(failed)}")
