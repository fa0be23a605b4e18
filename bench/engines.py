"""Compare engines on the same landing zone: a full first run and one ordinary night each.

    python bench/engines.py                          # 100k members x 90 days, all engines
    python bench/engines.py --members 2000 --days 10 --engines sail,connect-local

Engines (each run is `cdp run` in a new process, as Airflow would start it):
  sail           the embedded default (CDP_ENGINE=sail)
  spark-local    a local JVM SparkSession with delta-spark (CDP_ENGINE=spark, local[2])
  connect-local  a Spark Connect server in local[2] mode (CDP_ENGINE=connect)
  standalone-1   a Connect server on a standalone cluster with 1 worker
  standalone-2   ... with 2 workers
Each engine gets a fresh lake: (a) the full run for day D-1 (every earlier day), then
(b) the night of day D. Wall times include the process start (and the JVM session
for spark-local) but not starting the servers and workers (they would be running
already). Printed as a table with ratios to sail; written to
bench/results/engines-<members>-<days>.json (rewritten as each engine finishes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import generate  # noqa: E402
from jobs.spark_cluster import (  # noqa: E402
    ServerOptions,
    start_cluster,
    start_connect_server,
    stop_cluster,
    stop_connect_server,
)

ENGINES = ["sail", "spark-local", "standalone-1", "standalone-2"]
PII_KEY = "42" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def engine_env(engine: str, state: Path, args: argparse.Namespace):
    """The CDP_* variables of ``engine``; starts (and finally stops) its servers."""
    if engine == "sail":
        yield {"CDP_ENGINE": "sail"}
        return
    if engine == "spark-local":
        yield {"CDP_ENGINE": "spark"}
        return
    with ExitStack() as stack:
        master = "local[2]"
        if engine.startswith("standalone-"):
            workers = int(engine.split("-", 1)[1])
            master = start_cluster(
                state / "cluster",
                workers=workers,
                port=_free_port(),
                worker_cores=args.worker_cores,
                worker_memory=args.worker_memory,
            )
            stack.callback(stop_cluster, state / "cluster")
        opts = ServerOptions(
            port=_free_port(),
            master=master,
            driver_memory=args.driver_memory,
            executor_memory=args.executor_memory,
        )
        url = start_connect_server(opts, state / "connect")
        stack.callback(stop_connect_server, state / "connect")
        yield {"CDP_ENGINE": "connect", "CDP_CONNECT_URL": url}


def cdp_run(as_of: dt.date, landing: Path, run_dir: Path, engine_vars: dict) -> dict:
    """One ``cdp run`` in a new process; its wall time and the pipeline's own time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "SPARK_"))}
    env.update(
        engine_vars,
        CDP_LANDING=str(landing),
        CDP_LAKE=str(run_dir / "lake"),
        CDP_EXPORTS=str(run_dir / "exports"),
        CDP_WORK=str(run_dir / "work"),
        CDP_PII_KEY=PII_KEY,
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", "--date", as_of.isoformat()],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"cdp run {as_of} failed: {proc.stderr.strip()[-2000:]}")
    done = re.search(r"done in ([0-9.]+)s", proc.stdout)
    steps = dict(re.findall(r"\[(\w+)\s*\]\s+([0-9.]+)s", proc.stdout))
    return {
        "wall_s": round(wall, 1),
        "pipeline_s": float(done.group(1)) if done else None,
        "steps_s": {k: float(v) for k, v in steps.items()},
    }


def bench_engine(engine: str, landing: Path, end: dt.date, out: Path, args) -> dict:
    run_dir = out / f"run-{engine}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    with engine_env(engine, run_dir / "spark", args) as engine_vars:
        full = cdp_run(end - dt.timedelta(days=1), landing, run_dir, engine_vars)
        night = cdp_run(end, landing, run_dir, engine_vars)
    return {"engine": engine, "full": full, "night": night}


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["engine"] == "sail" and "full" in r), None)
    lines = [f"{'engine':<14} {'full run s':>11} {'x sail':>7} {'night s':>9} {'x sail':>7}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['engine']:<14} failed: {r['error'][:60]}")
            continue
        full, night = r["full"]["wall_s"], r["night"]["wall_s"]
        fx = f"{full / base['full']['wall_s']:.1f}" if base else "-"
        nx = f"{night / base['night']['wall_s']:.1f}" if base else "-"
        lines.append(f"{r['engine']:<14} {full:>11.1f} {fx:>7} {night:>9.1f} {nx:>7}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--executor-memory", default="2g")
    ap.add_argument("--worker-cores", type=int, default=1)
    ap.add_argument("--worker-memory", default="3g")
    args = ap.parse_args()

    end = dt.date(2026, 11, 7)
    out = args.out.absolute()
    landing, _, gen_s = generate(out, args.members, args.days, args.seed, end)
    target = ROOT / "bench" / "results" / f"engines-{args.members}-{args.days}.json"
    report = {
        "members": args.members,
        "days": args.days,
        "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "generate_s": round(gen_s, 1),
        "results": [],
    }
    for engine in args.engines.split(","):
        print(f"{engine} ...", flush=True)
        load_before = os.getloadavg()[0]
        try:
            result = bench_engine(engine, landing, end, out, args)
        except Exception as exc:  # noqa: BLE001 - one failed engine must not hide the others
            result = {"engine": engine, "error": str(exc)}
        # The machine may be shared: the 1-minute load average around each engine's runs.
        result["load_avg_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        report["results"].append(result)
        # Written as each engine finishes, so a run cut short keeps what it measured.
        target.write_text(json.dumps(report, indent=2) + "\n")
        print(table(report["results"]), flush=True)
    results = report["results"]
    print(f"written {target}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
