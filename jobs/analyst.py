"""Analyst access to the lake: ``cdp sql``, ``cdp serve``, ``cdp history``, ``cdp describe``.

Every Delta table ``<lake>/<layer>/<table>`` is registered as ``layer.table`` in the
session's catalog (``CREATE SCHEMA`` + ``CREATE TABLE ... USING delta LOCATION``,
which Sail and Spark both support), so queries read ``gold.member_rfm`` and time
travel works: ``SELECT * FROM gold.member_rfm VERSION AS OF 3``.

Access is read-only: every statement goes through :mod:`jobs.analyst_guard` before the
engine sees it. Layers holding raw PII (``bronze``, ``quarantine`` with its raw lines,
and ``restricted``) are neither registered nor readable by path unless the caller has
a PII role: ``CDP_ANALYST_ROLE`` names one of ``pii_roles`` in conf/analyst.yaml.

Sail's catalog lives in a Spark Connect *session*: ``cdp serve`` registers the
tables in one session with a fixed id and prints a URL carrying that id and a token,
so an analyst's PySpark client lands in the session where the tables are. The URL's
port is a token-checking, read-only gate (:mod:`jobs.serve_gate`) in front of Sail.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from jobs import storage
from jobs.analyst_guard import PII_LAYERS, Access, AccessDenied, checked_sql
from jobs.config import Settings, StrictModel, load_model

ROLE_ENV = "CDP_ANALYST_ROLE"
TOKEN_ENV = "CDP_SERVE_TOKEN"
TOKEN_FILE_ENV = "CDP_SERVE_TOKEN_FILE"


class ServeConf(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(15002, ge=0, le=65535)
    refresh_seconds: float = Field(30.0, gt=0)


class AnalystConf(StrictModel):
    pii_roles: list[str] = []
    serve: ServeConf = ServeConf()


def load_analyst_conf(conf_dir: Path | None = None) -> AnalystConf:
    return load_model("analyst.yaml", AnalystConf, conf_dir)


def has_pii_role(conf: AnalystConf | None = None, env: dict[str, str] | None = None) -> bool:
    """True when ``CDP_ANALYST_ROLE`` names a role conf/analyst.yaml lets read PII."""
    role = (os.environ if env is None else env).get(ROLE_ENV, "").strip()
    return bool(role) and role in (conf or load_analyst_conf()).pii_roles


def analyst_access(settings: Settings, include_pii: bool | None = None) -> Access:
    pii = has_pii_role() if include_pii is None else include_pii
    return Access(lake=Path(settings.paths.lake), pii=pii)


def lake_tables(lake: Path | str, include_pii: bool | None = None) -> list[tuple[str, str]]:
    """``(layer, table)`` of every Delta table under ``lake`` that analysts may see.

    A local table folder that resolves (symlinks) outside the lake or into a PII layer
    is left out unless PII is allowed; an object-store lake is listed through its Delta
    logs (jobs.storage), where there are no links.
    """
    pii = has_pii_role() if include_pii is None else include_pii
    if storage.is_remote(lake):
        found = [tuple(name.split("/")) for name in storage.delta_tables(lake)]
        return [(layer, t) for layer, t in found if pii or layer not in PII_LAYERS]
    root = Path(lake)
    real_root = root.resolve()
    found = []
    for log in sorted(root.glob("*/*/_delta_log")):
        layer, table = log.parent.parent.name, log.parent.name
        real = log.parent.resolve()
        if not real.is_relative_to(real_root):
            continue
        real_layer = real.relative_to(real_root).parts[0]
        if pii or (layer not in PII_LAYERS and real_layer not in PII_LAYERS):
            found.append((layer, table))
    return found


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
    """``sql`` over the lake's tables, addressed as ``layer.table``; read-only.

    Raises AccessDenied for a statement that writes or reaches out of bounds, and a
    ValueError naming the lake when a table is not there.
    """
    access = analyst_access(settings)
    statement = checked_sql(sql, access)
    names = register_tables(spark, settings.paths.lake, access.pii)
    try:
        df = spark.sql(statement)
        df.schema  # noqa: B018 - analyse now (Sail resolves tables lazily)
        return df
    except Exception as exc:
        text = str(exc)
        if "not found" in text.lower() or "TABLE_OR_VIEW_NOT_FOUND" in text:
            first = text.strip().splitlines()[0][:300]
            raise ValueError(
                f"{first} -- read lake {settings.paths.lake}, which has "
                f"{len(names)} table(s): {', '.join(names) or 'none'} "
                "(another lake: --lake DIR or CDP_LAKE)"
            ) from None
        raise


def _render_table(df: DataFrame, limit: int) -> None:
    """A table on a terminal; in a pipe, as wide as the data: an id is never cut in two."""
    from rich.console import Console
    from rich.table import Table

    rows = df.limit(limit + 1).collect()  # bounded: at most limit + 1 rows reach the client
    cells = [["" if v is None else str(v) for v in row] for row in rows[:limit]]
    table = Table(show_lines=False, header_style="bold")
    for name in df.columns:
        table.add_column(name, overflow="fold")
    for row in cells:
        table.add_row(*row)
    width = None
    if not sys.stdout.isatty():
        widths = [
            max([len(name), *(len(line) for row in cells for line in row[i].splitlines() or [""])])
            for i, name in enumerate(df.columns)
        ]
        width = max(80, sum(w + 3 for w in widths) + 1)
    console = Console(width=width, soft_wrap=width is not None)
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
    if out is not None and Path(out).resolve().is_relative_to(Path(settings.paths.lake).resolve()):
        raise AccessDenied(f"--out {out} is inside the lake: analyst access never writes there")
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
    _write_file(df, fmt, Path(out))


def _write_file(df: DataFrame, fmt: str, out: Path) -> None:
    import shutil

    from jobs.exports.files import write_single_file

    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.parent / f".cdp-sql-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        tmp = scratch / out.name
        write_single_file(df, fmt, tmp, scratch)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {out}")


# ---- history and describe (from the Delta log, via delta-rs) ----------------------------


def table_path(settings: Settings, name: str) -> Path:
    """``<lake>/<layer>/<table>`` of an analyst-visible ``layer.table``; ValueError if none."""
    visible = lake_tables(settings.paths.lake)
    layer, _, table = name.partition(".")
    if (layer, table) not in visible:
        known = ", ".join(f"{lay}.{t}" for lay, t in visible) or "none"
        raise ValueError(f"no table {name!r} in lake {settings.paths.lake} (tables: {known})")
    return Path(settings.paths.lake) / layer / table


def history_rows(settings: Settings, name: str, limit: int | None = None) -> list[dict]:
    """Versions of ``name``, newest first: version, time (engine time zone), operation."""
    from zoneinfo import ZoneInfo

    from deltalake import DeltaTable

    tz = ZoneInfo(settings.engine.timezone)
    rows = []
    for entry in DeltaTable(str(table_path(settings, name))).history(limit):
        when = dt.datetime.fromtimestamp(entry["timestamp"] / 1000, dt.UTC).astimezone(tz)
        params = entry.get("operationParameters") or {}
        metrics = entry.get("operationMetrics") or {}
        rows.append(
            {
                "version": entry.get("version"),
                "time": when.strftime("%Y-%m-%d %H:%M:%S %z"),
                "operation": entry.get("operation"),
                "mode": params.get("mode", ""),
                "rows_written": metrics.get("num_added_rows", metrics.get("numOutputRows", "")),
            }
        )
    return rows


def describe_table(settings: Settings, name: str) -> dict:
    """Columns and types, partition columns, version and row count (from file statistics)."""
    from deltalake import DeltaTable

    from jobs.lake import live_rows

    table = DeltaTable(str(table_path(settings, name)))
    actions = table.get_add_actions(flatten=True)
    return {
        "table": name,
        "location": str(table_path(settings, name)),
        "version": table.version(),
        "partitioned_by": list(table.metadata().partition_columns),
        "rows": live_rows(table),  # less the rows deletion vectors mark deleted
        "files": actions.num_rows,
        "columns": [(f.name, _type_name(f.type), f.nullable) for f in table.schema().fields],
    }


def _type_name(dtype) -> str:
    return getattr(dtype, "type", None) or type(dtype).__name__.replace("Type", "").lower()


# ---- cdp serve ------------------------------------------------------------------------


def shared_session_id(lake: Path | str) -> str:
    """A stable session id per lake, so the serve URL stays the same across restarts."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cdp-serve:{storage.normalise(lake)}"))


def serve_token(env: dict[str, str] | None = None) -> tuple[str, str]:
    """The token clients must present, and where it came from.

    ``CDP_SERVE_TOKEN`` or the file named by ``CDP_SERVE_TOKEN_FILE`` (a secret the
    deployment provides), else a new random token for this start.
    """
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip(), TOKEN_ENV
    if env.get(TOKEN_FILE_ENV):
        token = Path(env[TOKEN_FILE_ENV]).read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise ValueError(f"{env[TOKEN_FILE_ENV]}: a serve token needs at least 16 characters")
        return token, env[TOKEN_FILE_ENV]
    return secrets.token_urlsafe(24), "generated for this start"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def start_server(
    settings: Settings, port: int = 15002, host: str = "127.0.0.1", token: str | None = None
):
    """Start Sail on a private loopback port, the token gate on ``host:port`` and a shared
    session with every table registered.

    Returns ``(server, url, session)``: ``server.stop()`` stops both; ``url`` carries the
    session id and the token.
    """
    if not _loopback(host):
        raise ValueError(
            f"cdp serve listens on loopback only (got --host {host}); from another machine "
            "use an SSH tunnel: ssh -L 15002:localhost:15002 <this host>"
        )
    os.environ.setdefault("RUST_LOG", "warn")
    from pysail.spark import SparkConnectServer

    from jobs.serve_gate import start_gate

    token = token or serve_token()[0]
    backend = SparkConnectServer(ip="127.0.0.1", port=0)
    backend.start(background=True)
    b_host, b_port = backend.listening_address
    sid = shared_session_id(settings.paths.lake)
    session = SparkSession.builder.remote(f"sc://{b_host}:{b_port}/;session_id={sid}").create()
    session.conf.set("spark.sql.session.timeZone", settings.engine.timezone)
    register_tables(session, settings.paths.lake)
    gate, bound = start_gate(f"{b_host}:{b_port}", token, analyst_access(settings), host, port)
    url = f"sc://localhost:{bound}/;session_id={sid};token={token}"
    return _Servers(gate, backend), url, session


class _Servers:
    """The gate and the backend, stopped together."""

    def __init__(self, gate, backend):
        self.gate, self.backend = gate, backend

    def stop(self) -> None:
        try:
            self.gate.stop(grace=None)
        finally:
            self.backend.stop()


def serve(settings: Settings, port: int | None = None, host: str | None = None) -> None:
    """``cdp serve``: a read-only, token-checked Spark Connect endpoint until Ctrl-C.

    New tables (a nightly run creating one) are registered every ``refresh_seconds``.
    """
    conf = load_analyst_conf().serve
    token, origin = serve_token()
    server, url, session = start_server(
        settings, conf.port if port is None else port, host or conf.host, token
    )
    names = register_tables(session, settings.paths.lake)
    print(f"Spark Connect (read-only, token: {origin}) on {url.split('/;')[0]}")
    print(f"lake {settings.paths.lake}; {len(names)} table(s): {', '.join(names) or '(none yet)'}")
    print("Connect from PySpark (the URL carries the token and the shared session):")
    print(f'  spark = SparkSession.builder.remote("{url}").getOrCreate()')
    print('  spark.sql("SELECT rfm_segment, count(*) FROM gold.member_rfm GROUP BY 1").show()')
    print("Do not call spark.stop() on that session: it is shared. Ctrl-C to stop the server.")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(conf.refresh_seconds)
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
