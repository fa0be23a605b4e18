"""Analyst access to the lake: ``cdp sql`` and ``cdp serve``.

Every Delta table ``<lake>/<layer>/<table>`` is registered as ``layer.table`` in the
session's catalog (``CREATE SCHEMA`` + ``CREATE TABLE ... USING delta LOCATION``,
which Sail and Spark both support), so queries read ``gold.member_rfm`` and time
travel works: ``SELECT * FROM gold.member_rfm VERSION AS OF 3``.

Layers holding raw PII (``bronze``, ``quarantine`` with its raw lines, and
``restricted``) are left out unless ``CDP_ANALYST_INCLUDE_PII=1``.

Sail's catalog lives in a Spark Connect *session*: ``cdp serve`` registers the
tables in one session with a fixed id and prints a URL carrying that id, so an
analyst's PySpark client lands in the session where the tables are. A client in any
other session can call :func:`register_tables` itself.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from jobs import storage
from jobs.config import Settings

PII_LAYERS = ("bronze", "quarantine", "restricted")


def lake_tables(lake: Path | str, include_pii: bool | None = None) -> list[tuple[str, str]]:
    """``(layer, table)`` of every Delta table under ``lake`` that analysts may see."""
    if include_pii is None:
        include_pii = os.environ.get("CDP_ANALYST_INCLUDE_PII", "") in ("1", "true", "yes")
    found = [tuple(name.split("/")) for name in storage.delta_tables(lake)]
    return [(layer, t) for layer, t in found if include_pii or layer not in PII_LAYERS]


def register_tables(
    spark: SparkSession, lake: Path | str, include_pii: bool | None = None
) -> list[str]:
    """Register the lake's tables as ``layer.table`` in ``spark``'s catalog (idempotent)."""
    names = []
    for layer, table in lake_tables(lake, include_pii):
        path = storage.join(storage.normalise(lake), layer, table).replace("'", "\\'")
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{layer}`")
        spark.sql(f"CREATE TABLE IF NOT EXISTS `{layer}`.`{table}` USING delta LOCATION '{path}'")
        names.append(f"{layer}.{table}")
    return names


def query(spark: SparkSession, settings: Settings, sql: str) -> DataFrame:
    """``sql`` over the lake's tables, addressed as ``layer.table``."""
    register_tables(spark, settings.paths.lake)
    return spark.sql(sql)


def _render_table(df: DataFrame, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = df.limit(limit + 1).collect()  # bounded: at most limit + 1 rows reach the client
    table = Table(show_lines=False, header_style="bold")
    for name in df.columns:
        table.add_column(name, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*("" if v is None else str(v) for v in row))
    console = Console()
    console.print(table)
    more = " (more rows: raise --limit or use --format csv --out FILE)" if len(rows) > limit else ""
    console.print(f"{min(len(rows), limit)} row(s){more}")


def run_sql(
    settings: Settings,
    query_text: str,
    fmt: str = "table",
    out: Path | None = None,
    limit: int = 50,
    spark: SparkSession | None = None,
) -> None:
    """``cdp sql``: print a table (first ``limit`` rows) or write every row as CSV/Parquet.

    ``--format csv`` without ``--out`` prints CSV (first ``limit`` rows) to stdout.
    """
    from jobs.engine import get_spark

    if fmt not in ("table", "csv", "parquet"):
        raise ValueError(f"--format must be table, csv or parquet, got {fmt!r}")
    if fmt == "parquet" and out is None:
        raise ValueError("--format parquet needs --out FILE")
    spark = spark or get_spark(settings.engine)
    df = query(spark, settings, query_text)
    if fmt == "table":
        _render_table(df, limit)
        return
    if out is None:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(df.columns)
        for row in df.limit(limit).collect():
            writer.writerow(["" if v is None else v for v in row])
        return
    from jobs.exports.files import write_single_file

    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.parent / f".cdp-sql-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        tmp = scratch / out.name
        write_single_file(df, fmt, tmp, scratch)
        os.replace(tmp, out)
    finally:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out}")


def shared_session_id(lake: Path | str) -> str:
    """A stable session id per lake, so the serve URL stays the same across restarts."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cdp-serve:{storage.normalise(lake)}"))


def start_server(settings: Settings, port: int = 15002, host: str = "127.0.0.1"):
    """Start a Sail Spark Connect server and a shared session with every table registered.

    Returns ``(server, url, session)``; ``url`` includes the shared session id.
    """
    os.environ.setdefault("RUST_LOG", "warn")
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer(ip=host, port=port)
    server.start(background=True)
    bound_host, bound_port = server.listening_address
    url = f"sc://{bound_host}:{bound_port}/;session_id={shared_session_id(settings.paths.lake)}"
    session = SparkSession.builder.remote(url).create()
    session.conf.set("spark.sql.session.timeZone", settings.engine.timezone)
    register_tables(session, settings.paths.lake)
    return server, url, session


def serve(settings: Settings, port: int = 15002, refresh_seconds: float = 30.0) -> None:
    """``cdp serve``: a Spark Connect endpoint on localhost until Ctrl-C.

    New tables (a nightly run creating one) are registered every ``refresh_seconds``.
    """
    server, url, session = start_server(settings, port)
    names = register_tables(session, settings.paths.lake)
    print(f"Spark Connect on {url.split('/;')[0]} -- lake {settings.paths.lake}")
    print(f"{len(names)} table(s): {', '.join(names) or '(none yet)'}")
    print("Connect from PySpark (this URL joins the session where the tables are registered):")
    print(f'  spark = SparkSession.builder.remote("{url}").getOrCreate()')
    print('  spark.sql("SELECT rfm_segment, count(*) FROM gold.member_rfm GROUP BY 1").show()')
    print("Do not call spark.stop() on that session: it is shared. Ctrl-C to stop the server.")
    try:
        while True:
            time.sleep(refresh_seconds)
            try:
                register_tables(session, settings.paths.lake)
            except Exception as exc:  # noqa: BLE001 - keep serving; say why the refresh failed
                print(f"table refresh failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        try:
            session.stop()
        finally:
            server.stop()
