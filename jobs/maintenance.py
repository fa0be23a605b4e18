"""Delta maintenance through delta-rs: compaction and vacuum of every table of the lake.

Sail has no OPTIMIZE/VACUUM SQL, so both go through the ``deltalake`` package
(no Spark session needed). Used by ``cdp maintain`` and the weekly
``cdp_maintenance`` DAG. Settings in ``conf/maintenance.yaml``.

Compaction rewrites many small files (one per nightly append or MERGE) into few
large ones in one commit; readers keep seeing the same rows. Vacuum then deletes
files that no version younger than the retention window references, which bounds
how far back ``VERSION AS OF`` time travel can go.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from jobs import storage
from jobs.config import Settings, StrictModel, load_model


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


def maintain_table(path: Path | str, conf: MaintenanceConf, name: str) -> str:
    """Compact then vacuum one table; one line saying what was done."""
    from deltalake import DeltaTable

    override = conf.tables.get(name, TableMaintenance())
    compact = conf.compact if override.compact is None else override.compact
    vacuum = conf.vacuum if override.vacuum is None else override.vacuum
    retention = (
        conf.retention_hours if override.retention_hours is None else override.retention_hours
    )

    options = storage.delta_storage_options(path)
    table = DeltaTable(str(path), storage_options=options)
    parts = [f"{name}: v{table.version()}"]
    if compact:
        metrics = table.optimize.compact(target_size=conf.target_size_mb * 1024 * 1024)
        parts.append(
            f"compacted {metrics.get('numFilesRemoved', 0)} -> {metrics.get('numFilesAdded', 0)} files"
        )
    if vacuum:
        # Reload: compaction committed a new version.
        table = DeltaTable(str(path), storage_options=options)
        removed = table.vacuum(
            retention_hours=retention,
            dry_run=False,
            enforce_retention_duration=conf.enforce_retention_duration,
        )
        parts.append(f"vacuumed {len(removed)} files (retention {retention}h)")
    return ", ".join(parts)


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
    failed = []
    for name in names:
        try:
            yield maintain_table(storage.join(lake, name), conf, name)
        except Exception as exc:  # noqa: BLE001 - one bad table must not stop the others
            failed.append(name)
            yield f"{name}: FAILED {type(exc).__name__}: {exc}"
    if failed:
        raise RuntimeError(f"maintenance failed for {len(failed)} table(s): {', '.join(failed)}")
