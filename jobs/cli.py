"""The `cdp` command line (CONTRACT section 2).

Each command parses its arguments and calls one function of the package; errors
the user can act on are printed as one line with a non-zero exit code, never as
a traceback (set CDP_DEBUG=1 to see it).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from jobs.engine_cli import engine_app

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Customer data platform batch pipeline."
)
app.add_typer(engine_app, name="engine")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"cdp: {message}", err=True)
    raise typer.Exit(code)


def _settings(landing: Path | None = None, lake: Path | None = None, exports: Path | None = None):
    from jobs.config import load_settings, with_paths

    return with_paths(load_settings(), landing=landing, lake=lake, exports=exports)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _fail(f"--date must be YYYY-MM-DD, got {value!r}", 2)
        raise  # unreachable


LandingOpt = Annotated[
    Path | None,
    typer.Option("--landing", help="landing zone root (overrides conf and CDP_LANDING)"),
]
LakeOpt = Annotated[
    Path | None, typer.Option("--lake", help="lakehouse root (overrides conf and CDP_LAKE)")
]
ExportsOpt = Annotated[
    Path | None, typer.Option("--exports", help="exports root (overrides conf and CDP_EXPORTS)")
]


@app.command()
def run(
    date: Annotated[str, typer.Option("--date", help="business date D, YYYY-MM-DD")],
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    exports: ExportsOpt = None,
    allow_incomplete: Annotated[
        bool, typer.Option("--allow-incomplete", help="take in day folders without _SUCCESS")
    ] = False,
    steps: Annotated[
        str | None, typer.Option("--steps", help="comma-separated subset of steps")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="stop after this step")] = None,
) -> None:
    """Run the whole nightly pipeline for one business date."""
    from jobs.context import make_context
    from jobs.pipeline import run_pipeline, select_steps

    as_of = _date(date)
    settings = _settings(landing, lake, exports)
    chosen = select_steps(steps.split(",") if steps else None, until)
    ctx = make_context(settings, as_of, allow_incomplete=allow_incomplete)
    ctx.pii_key  # noqa: B018 - no PII key in a production config: refuse before any step
    typer.echo(f"cdp run {as_of} run_id={ctx.run_id} lake={settings.paths.lake}")
    t0 = time.perf_counter()

    def on_step(step, result, seconds):
        figures = ", ".join(
            f"{k}={v}"
            for k, v in result.items()
            if k in ("rows_in", "rows_out", "files", "quarantined")
        )
        typer.echo(f"  [{step.name:<10}] {seconds:7.1f}s  {figures}")

    run_pipeline(ctx, chosen, on_step=on_step)
    typer.echo(f"done in {time.perf_counter() - t0:.1f}s")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="landing zone to write")],
    members: Annotated[int, typer.Option("--members", min=1)] = 3000,
    days: Annotated[int, typer.Option("--days", min=1)] = 21,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="last business date (default: yesterday)")
    ] = None,
) -> None:
    """Write a realistic landing zone with known ground truth under OUT/truth."""
    from jobs.generate.landing import generate_landing

    end = _date(end_date) if end_date else dt.date.today() - dt.timedelta(days=1)
    summary = generate_landing(out, members=members, days=days, seed=seed, end_date=end)
    for key, value in summary.items():
        typer.echo(f"{key}: {value}")


@app.command("eval-identity")
def eval_identity(
    truth: Annotated[Path, typer.Option("--truth", help="the generator's truth/ folder")],
    lake: LakeOpt = None,
) -> None:
    """Score identity resolution against the generator's ground truth."""
    from jobs.identity.evaluate import evaluate_cli

    evaluate_cli(_settings(lake=lake), truth)


@app.command()
def sql(
    query: Annotated[
        str, typer.Argument(help="Spark SQL; tables are layer.table, e.g. gold.member_rfm")
    ],
    lake: LakeOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | parquet")] = "table",
    out: Annotated[Path | None, typer.Option("--out")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
) -> None:
    """Run a SQL query over the lake and print or save the result."""
    from jobs.analyst import run_sql

    run_sql(_settings(lake=lake), query, fmt=fmt, out=out, limit=limit)


@app.command()
def serve(
    lake: LakeOpt = None,
    port: Annotated[int, typer.Option("--port")] = 15002,
) -> None:
    """Start a Spark Connect endpoint on localhost with every table registered."""
    from jobs.analyst import serve as _serve

    _serve(_settings(lake=lake), port=port)


@app.command()
def forget(
    member: Annotated[str | None, typer.Option("--member")] = None,
    phone: Annotated[str | None, typer.Option("--phone")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    crm_id: Annotated[str | None, typer.Option("--crm-id")] = None,
    landing: LandingOpt = None,
    lake: LakeOpt = None,
    exports: ExportsOpt = None,
) -> None:
    """Erase a person from every layer and write an audit receipt."""
    from jobs.privacy.erasure import forget_cli

    forget_cli(
        _settings(landing, lake, exports), member=member, phone=phone, email=email, crm_id=crm_id
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
        str | None, typer.Option("--source", help="pos | web | crm (default: all)")
    ] = None,
) -> None:
    """List the quarantine rules (from the Great Expectations suites in expectations/)."""
    from jobs.ingest.rules import load_rules

    for src in [source] if source else ["pos", "web", "crm"]:
        seen: dict[str, list[str]] = {}
        for rule in load_rules(src):
            seen.setdefault(rule.name, []).append(rule.description)
        for name, descriptions in seen.items():
            typer.echo(f"{src:4} {name:32} {'; '.join(dict.fromkeys(descriptions))}")


@app.command("check-conf")
def check_conf() -> None:
    """Load and validate every configuration file."""
    from jobs.config import load_settings

    load_settings()
    typer.echo("conf/pipeline.yaml: ok")


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CDP_LOG_LEVEL", "WARNING"),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if os.environ.get("CDP_DEBUG"):
        app()
        return
    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        cause = getattr(exc, "cause", None) or exc
        msg = str(exc).splitlines()[0] if str(exc) else type(cause).__name__
        typer.echo(f"cdp: {msg}", err=True)
        sys.exit(1)
    finally:
        try:
            from jobs import engine

            engine.stop()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    main()
