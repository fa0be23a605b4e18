"""``make demo``: generate a landing zone and run the nightly DAG through Airflow.

    python -m jobs.demo --dir DIR [--members N] [--days D] [--runs K] [--stores S]

Defaults (``make demo``): 2,000 members, 400 days of history (more than a year, so every
lifecycle stage, churned included, every segment and every chart of the report has
data), 6 stores (few, larger POS files: the first run takes in the whole history) and 3
nightly runs (lifecycle transitions, tag changes and a KPI trend).

1. A project-local Airflow (``var/airflow``: SQLite, dags folder = the repo's
   ``dags/``, no examples), its database migrated (idempotent).
2. ``DIR/landing`` generated unless it is already there.
3. ``airflow dags test cdp_nightly <logical date>`` for the last generated business
   date D, with the logical date of the scheduled run that processes D (D+1 02:00
   Asia/Shanghai), the lake at ``DIR/lake`` and exports at ``DIR/exports`` (CDP_*
   variables). ``--runs K`` runs the K last dates in order through Airflow; on a fresh
   lake the first of them is replaced by a history load (``cdp run``, every day folder
   up to 28 days before the next night), so that night catches up a month at once.
4. What it built: every table with its row count, quarantine per source, export
   files and the report.

Running it again reuses the landing zone and re-runs the date (every step is
idempotent). ``var/airflow/env.sh`` holds the variables for ``airflow standalone``
against the same Airflow home (see README).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from jobs.config import PROJECT_ROOT
from jobs.orchestration.dates import trigger_time

DAG_ID = "cdp_nightly"
DEMO_MEMBERS, DEMO_DAYS, DEMO_RUNS, DEMO_STORES = 2000, 400, 3, 6
CATCH_UP_DAYS = 28  # the demo's first night takes in this many days at once


def airflow_env(airflow_home: Path, data_dir: Path) -> dict[str, str]:
    """Environment for the project-local Airflow and the pipeline it runs."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "CDP_LANDING": str(data_dir / "landing"),
        "CDP_LAKE": str(data_dir / "lake"),
        "CDP_EXPORTS": str(data_dir / "exports"),
        "CDP_WORK": str(data_dir / "work"),
        # A failing step should fail the demo now, not after the nightly backoff.
        "CDP_AIRFLOW_RETRIES": "0",
    }


def write_env_file(airflow_home: Path, env: dict[str, str]) -> Path:
    path = airflow_home / "env.sh"
    lines = ["# source this file, then: airflow standalone   (UI on http://localhost:8080)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    # The project's .venv/bin first, so `airflow` and `cdp` work as printed.
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _airflow(args: list[str], env: dict[str, str], log: Path | None = None, check: bool = True):
    cmd = [sys.executable, "-m", "airflow", *args]
    full_env = {**os.environ, **env}
    if log is None:
        return subprocess.run(cmd, env=full_env, check=check, capture_output=True, text=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ airflow {' '.join(args)}\n")
        fh.flush()
        return subprocess.run(cmd, env=full_env, check=False, stdout=fh, stderr=subprocess.STDOUT)


def ready_dates(landing: Path) -> list[dt.date]:
    """Business dates with a complete (``_SUCCESS``) folder for at least one source."""
    dates = set()
    for marker in landing.glob("*/*/_SUCCESS"):
        try:
            dates.add(dt.date.fromisoformat(marker.parent.name))
        except ValueError:
            continue
    return sorted(dates)


def table_counts(lake: Path) -> list[tuple[str, int]]:
    """Every Delta table under ``lake`` with its row count (delta-rs, from the Delta log:
    no Spark needed, deletion vectors counted)."""
    from deltalake import DeltaTable

    from jobs.lake import live_rows
    from jobs.maintenance import lake_tables

    out = []
    for name in lake_tables(lake):
        try:
            rows = live_rows(DeltaTable(str(lake / name)))
        except Exception:  # noqa: BLE001 - a table delta-rs cannot read is shown, not fatal
            rows = -1
        out.append((name, rows))
    return out


def summary(data_dir: Path, as_of: dt.date) -> list[str]:
    lake, exports = data_dir / "lake", data_dir / "exports"
    lines = [f"Lake {lake}:"]
    counts = table_counts(lake)
    for name, rows in counts:
        lines.append(f"  {name:<34} {rows:>10,} rows")
    lines.append("Quarantine per source:")
    for name, rows in counts:
        if name.startswith("quarantine/"):
            lines.append(f"  {name.split('/', 1)[1]:<8} {rows:>8,} rows")
    day = exports / as_of.isoformat()
    manifest = day / "manifest.json"
    lines.append(f"Exports {day}:")
    if manifest.exists():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        for seg in data["segments"]:
            lines.append(
                f"  {seg['name']:<26} {seg['channel']:<6} {seg['rows']:>7,} members "
                f"(+{seg.get('entered', 0)} / -{seg.get('exited', 0)})  {day / (seg['name'] + '.csv')}"
            )
            dropped = {k: v for k, v in seg.get("dropped", {}).items() if v}
            if dropped:
                why = ", ".join(f"{k} {v:,}" for k, v in dropped.items())
                lines.append(f"  {'':<26} not exported: {why}")
        lines.append(f"  manifest: {manifest}")
    else:
        lines.append("  (no manifest: the exports step did not publish)")
    report = day / "report.html"
    lines.append(f"Report: {report if report.exists() else '(not written)'}")
    return lines


def run_demo(
    data_dir: Path,
    members: int,
    days: int,
    seed: int = 42,
    runs: int = 3,
    airflow_home: Path | None = None,
    end_date: dt.date | None = None,
    stores: int | None = DEMO_STORES,
) -> int:
    data_dir = data_dir.absolute()
    airflow_home = (airflow_home or PROJECT_ROOT / "var" / "airflow").absolute()
    airflow_home.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    env = airflow_env(airflow_home, data_dir)
    os.environ.update(env)  # the generator and the summary read the same locations
    log = data_dir / "airflow.log"

    t0 = time.perf_counter()
    print(f"Airflow home {airflow_home} (dags: {PROJECT_ROOT / 'dags'})")
    _airflow(["db", "migrate"], env, log)
    print(
        f"  database migrated ({time.perf_counter() - t0:.0f}s); variables in {write_env_file(airflow_home, env)}"
    )

    landing = data_dir / "landing"
    if ready_dates(landing):
        print(f"Landing zone {landing}: present, reused")
    else:
        from jobs.generate.landing import generate_landing

        end = end_date or dt.date.today() - dt.timedelta(days=1)
        print(f"Generating {landing}: {members} members x {days} days up to {end} ...")
        info = generate_landing(
            landing, members=members, days=days, seed=seed, end_date=end, stores=stores
        )
        for key, value in (info or {}).items():
            print(f"  {key}: {value}")
    dates = ready_dates(landing)
    if not dates:
        print(f"demo: no ready day folder under {landing}", file=sys.stderr)
        return 1

    nights = dates[-runs:]
    if len(nights) > 1 and not (data_dir / "lake" / "meta" / "runs").exists():
        # A fresh lake: history up to a month before the nights is taken in by one
        # `cdp run` (the same step functions, without the scheduler's per-task overhead);
        # the first night then catches up the month, so identities linked in it merge
        # (the report's 30-day merge chart) and the KPI trend spans the month.
        nights = nights[1:]
        if not history_load(nights[0] - dt.timedelta(days=CATCH_UP_DAYS), env, log):
            return 1
    for as_of in nights:
        logical = trigger_time(as_of).isoformat()
        print(f"airflow dags test {DAG_ID} {logical}   (business date {as_of}; log {log})")
        t1 = time.perf_counter()
        offset = log.stat().st_size if log.exists() else 0
        proc = _airflow(["dags", "test", DAG_ID, logical], env, log)
        with open(log, "rb") as fh:
            fh.seek(offset)
            state = run_state(fh.read().decode("utf-8", errors="replace"))
        print(f"  -> {state} in {time.perf_counter() - t1:.0f}s")
        if proc.returncode != 0 or state != "success":
            print(
                f"demo: the DAG run for {as_of} did not succeed; last lines of {log}:",
                file=sys.stderr,
            )
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            print("\n".join(tail), file=sys.stderr)
            return 1
    for line in summary(data_dir, dates[-1]):
        print(line)
    print(f"Done in {time.perf_counter() - t0:.0f}s. See it in the Airflow UI:")
    print(f"  source {airflow_home / 'env.sh'} && airflow standalone")
    return 0


def history_load(as_of: dt.date, env: dict[str, str], log: Path) -> bool:
    """``cdp run --date D`` with the demo's locations: every ready day folder up to D."""
    print(f"cdp run --date {as_of}   (history load: every day folder up to {as_of}; log {log})")
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"\n$ cdp run --date {as_of}\n")
        fh.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "jobs.cli", "run", "--date", as_of.isoformat()],
            env={**os.environ, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
    print(
        f"  -> {'success' if proc.returncode == 0 else 'failed'} in {time.perf_counter() - t0:.0f}s"
    )
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
        print(f"demo: the history load failed; last lines of {log}:", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
    return proc.returncode == 0


def run_state(log_text: str) -> str:
    """State of the DAG run in the output of one ``airflow dags test`` call."""
    import re

    found = re.findall(rf"DagRun Finished: dag_id={DAG_ID},.*?state=(\w+)", log_text)
    return found[-1] if found else "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, required=True, help="demo folder (landing, lake, exports)"
    )
    parser.add_argument("--members", type=int, default=DEMO_MEMBERS)
    parser.add_argument("--days", type=int, default=DEMO_DAYS, help="days of history")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--runs", type=int, default=DEMO_RUNS, help="run the last K business dates, in order"
    )
    parser.add_argument(
        "--stores", type=int, default=DEMO_STORES, help="stores (one POS file each a day)"
    )
    parser.add_argument("--end-date", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--airflow-home", type=Path, default=None, help="default: var/airflow")
    args = parser.parse_args(argv)
    return run_demo(
        args.dir,
        args.members,
        args.days,
        seed=args.seed,
        runs=max(1, args.runs),
        airflow_home=args.airflow_home,
        end_date=args.end_date,
        stores=args.stores,
    )


if __name__ == "__main__":
    sys.exit(main())
