"""`cdp engine ...`: start and stop Apache Spark outside the pipeline's process.

    cdp engine serve-spark [--port 15002] [--master local[2]|spark://host:7077]
    cdp engine stop-spark
    cdp engine cluster start [--workers 2] [--port 7077]
    cdp engine cluster stop

Daemons run in the background with a pid file and a log under ``<work>/spark``
(``--state-dir`` to change it); ``serve-spark --foreground`` instead replaces this
process with the server, for a container or a service manager (stopped by SIGTERM).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

engine_app = typer.Typer(no_args_is_help=True, help="Start and stop Spark servers and clusters.")
cluster_app = typer.Typer(no_args_is_help=True, help="A standalone Spark cluster on this machine.")
engine_app.add_typer(cluster_app, name="cluster")

StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="pid files and logs (default: <work>/spark)"),
]


def _state_dir(state_dir: Path | None) -> Path:
    if state_dir is not None:
        return state_dir.absolute()
    from jobs.config import load_settings

    return load_settings().paths.work / "spark"


@engine_app.command("serve-spark")
def serve_spark(
    port: Annotated[int, typer.Option("--port")] = 15002,
    master: Annotated[str, typer.Option("--master", help="local[N] or spark://host:port")] = (
        "local[2]"
    ),
    driver_memory: Annotated[str, typer.Option("--driver-memory")] = "2g",
    foreground: Annotated[bool, typer.Option("--foreground", help="run in this process")] = False,
    state_dir: StateOpt = None,
) -> None:
    """Start an Apache Spark Connect server with Delta (CDP_ENGINE=connect talks to it)."""
    from jobs.config import load_settings
    from jobs.spark_cluster import (
        ServerOptions,
        connect_server_argv,
        daemon_env,
        log_file,
        start_connect_server,
    )

    engine = load_settings().engine
    opts = ServerOptions(
        port=port,
        master=master,
        timezone=engine.timezone,
        shuffle_partitions=engine.shuffle_partitions,
        driver_memory=driver_memory,
        extra_conf=dict(engine.spark_conf),
    )
    if foreground:
        argv = connect_server_argv(opts)
        os.execve(argv[0], argv, daemon_env(driver_memory))
    state = _state_dir(state_dir)
    url = start_connect_server(opts, state)
    typer.echo(f"Spark Connect server ready at {url} (log {log_file(state, 'connect')})")
    typer.echo(f"  CDP_ENGINE=connect CDP_CONNECT_URL={url} cdp run --date ...")


@engine_app.command("stop-spark")
def stop_spark(state_dir: StateOpt = None) -> None:
    """Stop the Connect server started by serve-spark."""
    from jobs.spark_cluster import stop_connect_server

    stopped = stop_connect_server(_state_dir(state_dir))
    typer.echo("stopped" if stopped else "no Spark Connect server was running")


@cluster_app.command("start")
def cluster_start(
    workers: Annotated[int, typer.Option("--workers", min=1)] = 2,
    port: Annotated[int, typer.Option("--port")] = 7077,
    cores: Annotated[int, typer.Option("--cores", min=1, help="cores per worker")] = 1,
    memory: Annotated[str, typer.Option("--memory", help="memory per worker")] = "1g",
    state_dir: StateOpt = None,
) -> None:
    """Start a standalone master and WORKERS workers on localhost (separate JVMs)."""
    from jobs.spark_cluster import start_cluster

    url = start_cluster(_state_dir(state_dir), workers, port, cores, memory)
    typer.echo(f"Spark master {url} with {workers} workers")
    typer.echo(f"  cdp engine serve-spark --master {url}")


@cluster_app.command("stop")
def cluster_stop(state_dir: StateOpt = None) -> None:
    """Stop the workers and the master started by `cluster start`."""
    from jobs.spark_cluster import stop_cluster

    stopped = stop_cluster(_state_dir(state_dir))
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no cluster was running")
