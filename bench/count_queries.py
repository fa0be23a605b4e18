"""Count the Spark executions, analyze calls and Delta commits each pipeline step issues.

    .venv/bin/python bench/count_queries.py                      # 40 members x 3 days, 2 nights
    .venv/bin/python bench/count_queries.py --members 40 --days 3 --steps identity --sites 25
    .venv/bin/python bench/count_queries.py --json bench/out/counts.json

On a small lake a JVM night costs its NUMBER of queries and commits (0.2-1 s each for
planning, Delta log listing and job scheduling), not its rows; this counts them. It
generates a landing zone of ``--members`` x ``--days + 1`` days (jobs.generate.landing),
then runs ``cdp run`` in this process on the embedded Sail engine (a Spark Connect
client): first the full run for day D-1 (``--days`` days of history), then the ordinary
night D. Every client round trip is counted by wrapping
``pyspark.sql.connect.client.core.SparkConnectClient``:

- ``exec``: an ExecutePlan whose plan is a relation (collect, count, toPandas, ...): a
  Spark job on the JVM;
- ``cmd``: an ExecutePlan whose plan is a command (a write, ``spark.sql``, a temp view,
  ...), named by its command type (``write_operation``, ``sql_command``, ...);
- ``analyze``: an AnalyzePlan call (``schema``, ``explain``, ...): planning only, no job.

Each is charged to the running step (jobs.pipeline._run_step_locked) and to its call
site, with the seconds it took: the innermost frame under jobs/ outside jobs/lake.py,
with the Lake method it went through if any (``jobs/identity/job.py:412 resolve
[lake.py merge]``). Delta commits are
counted per step as new ``_delta_log/*.json`` files under the lake (local lakes only).

Works with the default engine (``CDP_ENGINE`` unset or ``sail``/``connect``); a classic
JVM session (``CDP_ENGINE=spark``) has no Connect client, so nothing would be counted.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOBS = str(ROOT / "jobs") + os.sep
LAKE_PY = str(ROOT / "jobs" / "lake.py")


class Counter:
    """Round trips per (night, step, kind) and per (night, step, kind, call site)."""

    def __init__(self) -> None:
        self.night = "-"
        self.step = "-"
        self.by_step: collections.Counter = collections.Counter()
        self.by_site: collections.Counter = collections.Counter()
        self.commits: collections.Counter = collections.Counter()
        self.seconds: dict[tuple[str, str], float] = {}
        self.site_seconds: collections.Counter = collections.Counter()

    def record(self, kind: str) -> tuple:
        """Count one round trip; returns its key for :meth:`took`."""
        self.by_step[(self.night, self.step, kind.split(":")[0])] += 1
        key = (self.night, self.step, kind, call_site())
        self.by_site[key] += 1
        return key

    def took(self, key: tuple, t0: float) -> None:
        self.site_seconds[key] += time.perf_counter() - t0

    def executions(self) -> int:
        """Spark executions counted so far (``exec`` and ``cmd``; analyze calls not)."""
        return sum(n for k, n in self.by_step.items() if k[2] in ("exec", "cmd"))


def call_site() -> str:
    """The innermost frame under jobs/ outside jobs/lake.py (and the Lake method used)."""
    via = ""
    for frame in reversed(traceback.extract_stack()):
        if frame.filename == LAKE_PY and not via:
            via = f" [lake.py {frame.name}]"
        elif frame.filename.startswith(JOBS) and frame.filename != LAKE_PY:
            rel = os.path.relpath(frame.filename, ROOT)
            return f"{rel}:{frame.lineno} {frame.name}{via}"
    return "(outside jobs/)" + via


@contextlib.contextmanager
def counting(counter: Counter | None = None) -> Iterator[Counter]:
    """Count the Connect client's round trips into ``counter`` (a new one by default)
    while the block runs; the client is restored after it (used by the tests too)."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    counter = counter or Counter()
    saved = {m: getattr(SparkConnectClient, m) for m in CLIENT_METHODS}
    wrap_client(counter)
    try:
        yield counter
    finally:
        for name, method in saved.items():
            setattr(SparkConnectClient, name, method)


CLIENT_METHODS = ("_execute_and_fetch_as_iterator", "_execute", "_analyze")


def wrap_client(counter: Counter) -> None:
    """Wrap SparkConnectClient's execute, execute-and-fetch and analyze round trips."""
    from pyspark.sql.connect.client.core import SparkConnectClient

    fetch = SparkConnectClient._execute_and_fetch_as_iterator
    execute = SparkConnectClient._execute
    analyze = SparkConnectClient._analyze

    def plan_kind(req) -> str:
        if req.plan.WhichOneof("op_type") == "command":
            return "cmd:" + str(req.plan.command.WhichOneof("command_type"))
        return "exec"

    def counted_fetch(self, req, *args, **kwargs):
        key, t0 = counter.record(plan_kind(req)), time.perf_counter()
        try:
            yield from fetch(self, req, *args, **kwargs)
        finally:
            counter.took(key, t0)

    def counted_execute(self, req, *args, **kwargs):
        key, t0 = counter.record(plan_kind(req)), time.perf_counter()
        try:
            return execute(self, req, *args, **kwargs)
        finally:
            counter.took(key, t0)

    def counted_analyze(self, method, *args, **kwargs):
        key, t0 = counter.record(f"analyze:{method}"), time.perf_counter()
        try:
            return analyze(self, method, *args, **kwargs)
        finally:
            counter.took(key, t0)

    SparkConnectClient._execute_and_fetch_as_iterator = counted_fetch
    SparkConnectClient._execute = counted_execute
    SparkConnectClient._analyze = counted_analyze


def install(counter: Counter) -> None:
    """Wrap the Connect client's round trips and the pipeline's step runner (for good)."""
    import jobs.pipeline as pipeline

    wrap_client(counter)
    run_locked = pipeline._run_step_locked

    def counted_step(ctx, step):
        counter.step = step.name
        before = delta_commits(ctx.settings.paths.lake)
        t0 = time.perf_counter()
        try:
            return run_locked(ctx, step)
        finally:
            counter.seconds[(counter.night, step.name)] = time.perf_counter() - t0
            counter.commits[(counter.night, step.name)] = (
                delta_commits(ctx.settings.paths.lake) - before
            )
            counter.step = "-"

    pipeline._run_step_locked = counted_step


def delta_commits(lake: str | Path) -> int:
    """Delta commit files under a local lake (0 for an object store)."""
    root = Path(str(lake))
    if not root.is_dir():
        return 0
    return sum(1 for _ in root.glob("*/*/_delta_log/*.json"))


def report(counter: Counter, steps: list[str] | None, sites: int) -> dict:
    """Print per-step totals and the busiest call sites; return them as a dict."""
    out: dict = {}
    nights = list(dict.fromkeys(k[0] for k in counter.seconds))
    names = list(dict.fromkeys(k[1] for k in counter.seconds))
    print(
        f"{'night':<6} {'step':<16} {'exec':>5} {'cmd':>5} {'analyze':>7} {'commits':>7} {'s':>7}"
    )
    for night in nights:
        total = collections.Counter()
        for name in names:
            row = {k: counter.by_step[(night, name, k)] for k in ("exec", "cmd", "analyze")}
            row["commits"] = counter.commits.get((night, name), 0)
            row["seconds"] = round(counter.seconds.get((night, name), 0.0), 2)
            total.update(row)
            out.setdefault(night, {})[name] = row
            print(f"{night:<6} {name:<16} {row['exec']:>5} {row['cmd']:>5} {row['analyze']:>7} "
                  f"{row['commits']:>7} {row['seconds']:>7.1f}")  # fmt: skip
        print(f"{night:<6} {'TOTAL':<16} {total['exec']:>5} {total['cmd']:>5} "
              f"{total['analyze']:>7} {total['commits']:>7} {total['seconds']:>7.1f}")  # fmt: skip
    for night in nights:
        for name in steps or []:
            print(f"\n{night} {name}: slowest call sites (count seconds kind site)")
            rows = [
                (n, round(counter.site_seconds[k], 3), k[2], k[3])
                for k, n in counter.by_site.items()
                if k[:2] == (night, name)
            ]
            for n, secs, kind, site in sorted(rows, key=lambda r: (-r[1], r[3]))[:sites]:
                print(f"  {n:>4} {secs:>7.2f} {kind:<28} {site}")
            out[night][name]["sites"] = [list(r) for r in rows]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--days", type=int, default=3, help="days of history before the night")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--end", default="2026-03-31", help="the night's date D (YYYY-MM-DD)")
    ap.add_argument("--steps", default="identity", help="steps whose call sites to list")
    ap.add_argument("--sites", type=int, default=30, help="call sites listed per step")
    ap.add_argument("--work", type=Path, help="folder kept for the run (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write the counts here")
    args = ap.parse_args()

    end = dt.date.fromisoformat(args.end)
    work = args.work or Path(tempfile.mkdtemp(prefix="cdp-count-"))
    env = {"CDP_LANDING": work / "landing", "CDP_LAKE": work / "lake",
           "CDP_EXPORTS": work / "exports", "CDP_WORK": work / "work"}  # fmt: skip
    for var, path in env.items():
        os.environ[var] = str(path)
    os.environ.setdefault("CDP_PII_KEY", "count-queries-key")

    from jobs.cli import main as cdp
    from jobs.generate.landing import generate_landing

    generate_landing(work / "landing", args.members, args.days + 1, args.seed, end)
    counter = Counter()
    install(counter)
    for night, day in (("first", end - dt.timedelta(days=1)), ("night", end)):
        counter.night = night
        try:
            cdp(["run", "--date", day.isoformat()])
        except SystemExit as exc:
            if exc.code:
                raise
    print(f"\n{args.members} members x {args.days} days, then one night; work dir {work}")
    out = report(counter, [s for s in args.steps.split(",") if s], args.sites)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
