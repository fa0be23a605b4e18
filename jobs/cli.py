"""The `cdp` command line (CONTRACT section 2).

Each command parses its arguments and calls one function of the package; errors
the user can act on are printed as one line with a non-zero exit code, never as
a traceback (set CDP_DEBUG=1 to see it).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from jobs.engine_cli import engine_app
from jobs.pipeline import STEPS
from jobs.sources import SOURCE_NAMES
from jobs.sources import SOURCES as SOURCES_BY_NAME

# Plain help (no rich panels): typer's rich help shows flags as taking a `<bool>` value.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Customer data platform batch pipeline.",
)
STEP_NAMES = ", ".join(s.name for s in STEPS)
STEP_WIDTH = max(len(s.name) for s in STEPS)  # step names line up in `cdp run`'s output
SOURCES = SOURCE_NAMES


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cdp {version('cdp-pipeline')}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Customer data platform batch pipeline."""


app.add_typer(engine_app, name="engine")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"cdp: {message}", err=True)
    raise typer.Exit(code)


def _settings(landing: Path | None = None, lake: str | None = None, exports: str | None = None):
    from jobs.config import load_settings, with_paths

    return with_paths(load_settings(), landing=landing, lake=lake, exports=exports)


def _date(value: str, option: str = "--date") -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} must be YYYY-MM-DD, got {value!r}", 2)
        raise  # unreachable


LandingOpt = Annotated[
    Path | None,
    typer.Option("--landing", help="landing zone root (overrides conf and CDP_LANDING)"),
]
# A folder or an object-store URI (s3://bucket/prefix): kept as text, see jobs.storage.
LakeOpt = Annotated[
    str | None,
    typer.Option("--lake", help="lakehouse root, a folder or s3:// URI (overrides CDP_LAKE)"),
]
ExportsOpt = Annotated[
    str | None,
    typer.Option("--exports", help="exports root, a folder or s3:// URI (overrides CDP_EXPORTS)"),
]


@app.command()
def run(
    date: Annotated[str, typer.Option("--date", help="business date D, YYYY-MM-DD")],
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    exports: ExportsOpt = None,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="run although D's folder of a source is missing or has no _SUCCESS",
        ),
    ] = False,
    steps: Annotated[
        str | None,
        typer.Option("--steps", help=f"comma-separated subset of steps: {STEP_NAMES}"),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="stop after this step (same names)")
    ] = None,
    recompute: Annotated[
        bool,
        typer.Option(
            "--recompute",
            help="run the gold and export steps even when their inputs did not change "
            "since they last ran for this date (default: such a rerun skips them)",
        ),
    ] = False,
) -> None:
    """Run the whole nightly pipeline for one business date.

    Before anything is written: the date, every conf/ file (with every SQL rule) and
    D's landing folders are checked; a refused run leaves the lake as it was.
    """
    as_of = _date(date)
    from jobs.config import validate_conf
    from jobs.context import make_context
    from jobs.pipeline import run_pipeline, select_steps

    settings = _settings(landing, lake, exports)
    chosen = select_steps(steps.split(",") if steps else None, until)
    if not allow_incomplete:
        _check_landing(settings, as_of, [s.name for s in chosen])
    ctx = make_context(settings, as_of, allow_incomplete=allow_incomplete, recompute=recompute)
    validate_conf(ctx.spark)
    ctx.pii_key  # noqa: B018 - no PII key in a production config: refuse before any step
    typer.echo(f"cdp run {as_of} run_id={ctx.run_id} lake={settings.paths.lake}")
    t0 = time.perf_counter()

    def on_step(step, result, seconds):
        figures = ", ".join(
            f"{k}={v}"
            for k, v in result.items()
            if k in ("rows_in", "rows_out", "files", "quarantined")
            or (k in ("duplicates", "refused") and v)
        )
        if result.get("refused"):  # landing entries never read: name them
            figures += f" ({', '.join(result.get('refused_paths', []))}: see meta/ingest_manifest)"
        if result.get("skipped") and result.get("computed_by"):  # jobs.memo
            figures += f" (skipped: {result['skipped']}, computed by run {result['computed_by']})"
        typer.echo(f"  [{step.name:<{STEP_WIDTH}}] {seconds:7.1f}s  {figures}")

    run_pipeline(ctx, chosen, on_step=on_step)
    typer.echo(f"done in {time.perf_counter() - t0:.1f}s")


def _check_landing(settings, as_of: dt.date, step_names: list[str]) -> None:
    """Refuse, naming every one, when D's folder of a source the run ingests is not ready."""
    from jobs.ingest.landing import LandingNotReady, check_ready

    problems = []
    for source in settings.ingest.sources:
        if SOURCES_BY_NAME[source].optional and not (settings.paths.landing / source).is_dir():
            continue  # a chain without this system
        if f"ingest_{source}" in step_names:
            try:
                check_ready(settings.paths.landing, source, as_of)
            except LandingNotReady as exc:
                problems.append(str(exc).split(" (wait for it")[0])
    if problems:
        _fail(
            f"{len(problems)} landing folder(s) not ready for {as_of}: "
            + "; ".join(problems)
            + ". Wait for them, or pass --allow-incomplete to run without them."
        )


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="landing zone to write")],
    members: Annotated[int, typer.Option("--members", min=1)] = 3000,
    days: Annotated[int, typer.Option("--days", min=1)] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="last business date (default: yesterday)")
    ] = None,
    dirty_identity: Annotated[
        bool,
        typer.Option(
            "--dirty-identity",
            help="harder identity truth: typos, 4-8 registrations, shared family phones",
        ),
    ] = False,
) -> None:
    """Write a realistic landing zone with known ground truth under OUT/truth."""
    from jobs.generate.landing import generate_landing

    end = _date(end_date, "--end-date") if end_date else dt.date.today() - dt.timedelta(days=1)
    summary = generate_landing(
        out, members=members, days=days, seed=seed, end_date=end, dirty_identity=dirty_identity
    )
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")


@app.command("eval-identity")
def eval_identity(
    truth: Annotated[Path, typer.Option("--truth", help="the generator's truth/ folder")],
    lake: LakeOpt = None,
    pairs: Annotated[int, typer.Option("--pairs", help="false/missed pairs to print")] = 20,
    pairs_out: Annotated[
        Path | None,
        typer.Option(
            "--pairs-out", help="CSV of all pairs (default <work>/eval_identity/pairs.csv)"
        ),
    ] = None,
) -> None:
    """Score identity resolution against the generator's ground truth."""
    from jobs.identity.evaluate import evaluate_cli

    evaluate_cli(_settings(lake=lake), truth, pairs, pairs_out)


identity_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Identity resolution tools."
)
app.add_typer(identity_app, name="identity")


@identity_app.command("train")
def identity_train(
    date: Annotated[str, typer.Option("--date", help="train on CRM records dated <= D")],
    lake: LakeOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="weights file (default conf/<scored.weights_file>)"),
    ] = None,
) -> None:
    """Train the scored pass's Fellegi-Sunter weights (EM) on the lake's CRM records."""
    from jobs.context import make_context
    from jobs.identity.conf import load_identity_conf_without_weights
    from jobs.identity.train import train, weights_path

    conf = load_identity_conf_without_weights()
    ctx = make_context(_settings(lake=lake), _date(date))
    path = out or weights_path(conf)
    w = train(ctx, conf, path)
    typer.echo(
        f"wrote {path}: {w.records} records, {w.candidate_pairs} candidate pairs, "
        f"{w.random_pairs} random pairs, prior {w.prior:.4g}, {w.iterations} EM iterations "
        f"({'converged' if w.converged else 'NOT converged'}, last change {w.max_change:.2g})"
    )


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="Spark SQL; tables are layer.table, e.g. gold.member_rfm")
    ],
    lake: LakeOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | parquet")] = "table",
    out: Annotated[Path | None, typer.Option("--out", help="write every row to FILE")] = None,
    limit: Annotated[int, typer.Option("--limit", help="rows printed (table, csv)")] = 50,
) -> None:
    """Run a read-only SQL query over the lake and print or save the result."""
    from jobs.analyst import run_sql

    run_sql(_settings(lake=lake), query, fmt=fmt, out=out, limit=limit)


@app.command()
def history(
    table: Annotated[str, typer.Argument(help="layer.table, e.g. gold.member_rfm")],
    lake: LakeOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="newest N versions")] = None,
) -> None:
    """Versions of a table (time, operation) from its Delta log, newest first."""
    from jobs.analyst import history_rows

    settings = _settings(lake=lake)
    typer.echo(f"{'version':>7}  {'time (' + settings.engine.timezone + ')':<25}  operation")
    for row in history_rows(settings, table, limit):
        extra = f"  mode={row['mode']}" if row["mode"] else ""
        rows = f"  rows={row['rows_written']}" if row["rows_written"] != "" else ""
        typer.echo(f"{row['version']:>7}  {row['time']:<25}  {row['operation']}{extra}{rows}")


@app.command()
def describe(
    table: Annotated[str, typer.Argument(help="layer.table, e.g. gold.member_rfm")],
    lake: LakeOpt = None,
) -> None:
    """Columns and types, partitioning, version and row count of a table."""
    from jobs.analyst import describe_table

    info = describe_table(_settings(lake=lake), table)
    typer.echo(f"{info['table']}  ({info['location']})")
    typer.echo(f"version {info['version']}, {info['rows']} rows in {info['files']} file(s)")
    typer.echo(f"partitioned by: {', '.join(info['partitioned_by']) or '(none)'}")
    for name, dtype, nullable in info["columns"]:
        typer.echo(f"  {name:<32} {dtype}{'' if nullable else '  not null'}")


@app.command()
def serve(
    lake: LakeOpt = None,
    port: Annotated[
        int | None, typer.Option("--port", help="default: conf/analyst.yaml (15002)")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="loopback address (default 127.0.0.1)")
    ] = None,
) -> None:
    """Start a read-only Spark Connect endpoint (token required) with every table registered."""
    from jobs.analyst import serve as _serve

    _serve(_settings(lake=lake), port=port, host=host)


@app.command()
def forget(
    member: Annotated[
        str | None, typer.Option("--member", help="member id (silver/members.member_id)")
    ] = None,
    phone: Annotated[
        str | None, typer.Option("--phone", help="phone number, any format (+86 optional)")
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="e-mail address")] = None,
    crm_id: Annotated[str | None, typer.Option("--crm-id", help="CRM member id")] = None,
    no_recompute: Annotated[
        bool,
        typer.Option(
            "--no-recompute",
            help="skip re-running the steps from identity on (a batch of erasures: the next"
            " run rebuilds them; until then the latest date's aggregates still count the person)",
        ),
    ] = False,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    exports: ExportsOpt = None,
) -> None:
    """Erase a person from every layer and write an audit receipt."""
    from jobs.privacy.erasure import forget_cli

    forget_cli(
        _settings(landing, lake, exports),
        member=member,
        phone=phone,
        email=email,
        crm_id=crm_id,
        recompute=not no_recompute,
    )


@app.command()
def maintain(
    lake: LakeOpt = None,
) -> None:
    """Compact and vacuum every Delta table (retention from conf/maintenance.yaml)."""
    from jobs.maintenance import maintain_all

    for line in maintain_all(_settings(lake=lake)):
        typer.echo(line)


@app.command()
def rules(
    source: Annotated[
        str | None, typer.Option("--source", help=f"{' | '.join(SOURCE_NAMES)} (default: all)")
    ] = None,
) -> None:
    """List the row rules (from the Great Expectations suites in expectations/).

    A rule on an optional field nulls the field and keeps the row (marked ``[field nulled]``);
    every other rule quarantines the row.
    """
    from jobs.ingest.rules import load_rules

    if source is not None and source not in SOURCES:
        _fail(f"unknown source {source!r}; sources are: {', '.join(SOURCES)}", 2)
    for src in [source] if source else SOURCES:
        seen: dict[str, list[str]] = {}
        optional = {rule.name for rule in load_rules(src) if rule.field}
        for rule in load_rules(src):
            seen.setdefault(rule.name, []).append(rule.description)
        for name, descriptions in seen.items():
            note = " [field nulled, row kept]" if name in optional else ""
            typer.echo(f"{src:4} {name:32} {'; '.join(dict.fromkeys(descriptions))}{note}")


@app.command()
def kpis(
    date: Annotated[str, typer.Option("--date", help="business date D, YYYY-MM-DD")],
    lake: LakeOpt = None,
) -> None:
    """Print the operating KPIs of D against their targets (conf/kpis.yaml), with the gap."""
    from jobs.report.kpi_targets import kpis_table

    typer.echo(kpis_table(_settings(lake=lake).paths.lake, _date(date)))


@app.command("check-conf")
def check_conf() -> None:
    """Validate every conf/ file, SQL rules included (tags, lifecycle, segments)."""
    from jobs import engine
    from jobs.config import load_settings, validate_conf

    settings = load_settings()
    for line in validate_conf(engine.get_spark(settings.engine)):
        typer.echo(f"{line}: ok")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``cdp``: exits with the command's code (0 only on success)."""
    logging.basicConfig(
        level=os.environ.get("CDP_LOG_LEVEL", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        args = ["--help"]  # help on stdout, exit 0 (not click's NoArgsIsHelpError)
    try:
        code = _invoke(args)
    finally:
        try:
            from jobs import engine

            engine.stop()
        except Exception:  # noqa: BLE001
            pass
    sys.exit(code)


def _invoke(args: list[str]) -> int:
    """Run the command; the exit code, with one ``cdp: <reason>`` line on failure."""
    if os.environ.get("CDP_DEBUG"):
        return app(args, prog_name="cdp", standalone_mode=False) or 0
    try:
        code = app(args, prog_name="cdp", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 130
    except typer.TyperException as exc:  # usage errors: typer prints usage and the reason
        show = getattr(exc, "show", None)
        show() if show else typer.echo(f"cdp: {exc.format_message()}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        typer.echo(f"cdp: {one_line_reason(exc)}", err=True)
        if getattr(exc, "hint", None):  # what to change, e.g. a memory pool to raise
            typer.echo(f"cdp: {exc.hint}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def one_line_reason(exc: BaseException) -> str:
    """The first line of ``exc``'s message, with a gRPC error's ``details`` (the engine's
    own reason, which the first line of such an error leaves out)."""
    cause = getattr(exc, "cause", None) or exc
    text = str(exc)
    if not text:
        return type(cause).__name__
    first = text.splitlines()[0]
    details = re.search(r'details = "(.*?)"\s*(?:\n\s*debug_error_string|$)', text, re.S)
    if details and details.group(1).strip() not in first:
        return f"{first.removesuffix(':').rstrip()} {' '.join(details.group(1).split())}"
    return first


if __name__ == "__main__":
    main()
