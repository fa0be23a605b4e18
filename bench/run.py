"""Benchmark the nightly pipeline: full first run, one ordinary night, a rerun.

    python bench/run.py                  # 100k members x 90 days
    python bench/run.py --members 1000000
    python bench/run.py --members 20000 --days 30 --out bench/out/small

Generates (once, cached under --out) a landing zone of N members over D days,
then measures, each in this one process (the embedded engine runs in-process,
so the process's memory is the whole pipeline's):
  (a) the full first run for day D-1 (days 1..D-1 of history),
  (b) one ordinary nightly run for day D (one new day),
  (c) a rerun of day D.
For every step: wall time, rows in/out, rows per second, and peak RSS. Then a
DuckDB reference of bronze -> orders -> RFM on the same bronze files, and our
RFM time (features + rfm steps) over DuckDB's. Figures go to --out/results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class PeakRss:
    """Sample this process's RSS every 50 ms; ``peak`` is the maximum seen since ``reset``."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.memory_info().rss + sum(
                c.memory_info().rss for c in self.proc.children(recursive=True)
            )
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss

    def stop(self) -> None:
        self._stop.set()


def generate(
    out: Path, members: int, days: int, seed: int, end: dt.date
) -> tuple[Path, dict, float]:
    from jobs.generate.landing import generate_landing

    landing = out / f"landing-{members}-{days}-{seed}"
    marker = landing / ".complete"
    if marker.exists():
        return landing, json.loads(marker.read_text()), 0.0
    shutil.rmtree(landing, ignore_errors=True)
    t0 = time.perf_counter()
    summary = generate_landing(landing, members=members, days=days, seed=seed, end_date=end)
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps(summary, default=str))
    return landing, summary, seconds


def run_phase(name: str, settings, as_of: dt.date, rss: PeakRss) -> dict:
    from jobs.context import make_context
    from jobs.pipeline import run_pipeline

    ctx = make_context(settings, as_of)
    steps: list[dict] = []

    def on_step(step, result, seconds):
        rows_in = int(result.get("rows_in", 0) or 0)
        rows_out = int(result.get("rows_out", 0) or 0)
        steps.append(
            {
                "step": step.name,
                "seconds": round(seconds, 2),
                "rows_in": rows_in,
                "rows_out": rows_out,
                "rows_per_s": round(rows_in / seconds) if seconds > 0 else None,
                "peak_rss_mb": round(rss.peak / 2**20),
            }
        )
        print(
            f"  {name:8} {step.name:10} {seconds:8.2f}s in={rows_in:>11,} out={rows_out:>11,} "
            f"rows/s={steps[-1]['rows_per_s'] or 0:>10,} peak={steps[-1]['peak_rss_mb']:>6,} MB",
            flush=True,
        )
        rss.reset()

    rss.reset()
    t0 = time.perf_counter()
    run_pipeline(ctx, on_step=on_step)
    total = time.perf_counter() - t0
    peak = max((s["peak_rss_mb"] for s in steps), default=0)
    print(f"  {name:8} {'TOTAL':10} {total:8.2f}s peak={peak:,} MB", flush=True)
    return {
        "as_of": as_of.isoformat(),
        "seconds": round(total, 2),
        "peak_rss_mb": peak,
        "steps": steps,
    }


def duckdb_rfm(lake: Path, as_of: dt.date) -> tuple[float, int]:
    """Bronze -> orders -> RFM in DuckDB over the same Delta files; (seconds, members)."""
    import duckdb
    from deltalake import DeltaTable

    def files(table: str) -> list[str]:
        return [u.removeprefix("file://") for u in DeltaTable(str(lake / table)).file_uris()]

    con = duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Shanghai'")
    t0 = time.perf_counter()
    con.execute(
        "CREATE TEMP TABLE pos AS SELECT * FROM read_parquet(?)", [files("bronze/pos_lines")]
    )
    con.execute(
        "CREATE TEMP TABLE xref AS SELECT * FROM read_parquet(?)", [files("silver/member_xref")]
    )
    d = as_of.isoformat()
    sql = f"""
    WITH orders AS (
      SELECT order_id, any_value(txn_type) AS txn_type, any_value(order_date) AS order_date,
             sum(amount) AS amount, any_value(member_card_no) AS card
      FROM pos GROUP BY order_id),
    m AS (SELECT o.*, x.member_id FROM orders o JOIN xref x
          ON x.source = 'pos_card' AND x.source_key = upper(trim(o.card))),
    agg AS (
      SELECT member_id,
        DATE '{d}' - max(order_date) FILTER (WHERE txn_type = 'SALE') AS recency_days,
        count(DISTINCT order_id) FILTER (WHERE txn_type = 'SALE' AND order_date > DATE '{d}' - 365) AS frequency,
        round(coalesce(sum(amount) FILTER (WHERE txn_type = 'SALE' AND order_date > DATE '{d}' - 365), 0)
            - coalesce(sum(amount) FILTER (WHERE txn_type = 'RETURN' AND order_date > DATE '{d}' - 365), 0), 2) AS monetary
      FROM m WHERE order_date <= DATE '{d}' GROUP BY member_id HAVING max(order_date) FILTER (WHERE txn_type = 'SALE') IS NOT NULL)
    SELECT member_id, recency_days, frequency, monetary,
      ceil(5 * cume_dist() OVER (ORDER BY recency_days DESC)) AS r_score,
      ceil(5 * cume_dist() OVER (ORDER BY frequency)) AS f_score,
      ceil(5 * cume_dist() OVER (ORDER BY monetary)) AS m_score
    FROM agg"""
    n = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--skip-duckdb", action="store_true")
    args = ap.parse_args()

    from jobs.config import load_settings, with_paths

    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    end = dt.date(2026, 11, 20)
    print(f"generating {args.members:,} members x {args.days} days ...", flush=True)
    landing, summary, gen_s = generate(out, args.members, args.days, args.seed, end)
    print(f"  landing {landing} ({gen_s:.1f}s)", flush=True)

    run_dir = out / f"run-{args.members}-{args.days}"
    shutil.rmtree(run_dir, ignore_errors=True)
    settings = with_paths(
        load_settings(env={}),
        landing=landing,
        lake=run_dir / "lake",
        exports=run_dir / "exports",
        work=run_dir / "work",
    )
    rss = PeakRss()
    results: dict = {
        "members": args.members,
        "days": args.days,
        "generate_seconds": round(gen_s, 1),
        "landing_summary": summary,
    }
    results["a_full_first_run"] = run_phase("full", settings, end - dt.timedelta(days=1), rss)
    results["b_nightly"] = run_phase("nightly", settings, end, rss)
    results["c_rerun"] = run_phase("rerun", settings, end, rss)
    a, b = results["a_full_first_run"]["seconds"], results["b_nightly"]["seconds"]
    results["nightly_over_full"] = round(b / a, 4) if a else None
    print(f"nightly / full = {results['nightly_over_full']}")

    if not args.skip_duckdb:
        ours = sum(
            s["seconds"] for s in results["b_nightly"]["steps"] if s["step"] in ("features", "rfm")
        )
        duck_s, duck_n = duckdb_rfm(run_dir / "lake", end)
        results["duckdb_rfm_seconds"] = round(duck_s, 2)
        results["duckdb_rfm_members"] = duck_n
        results["our_rfm_seconds"] = round(ours, 2)
        results["rfm_over_duckdb"] = round(ours / duck_s, 2) if duck_s else None
        print(
            f"RFM: ours (features+rfm, nightly) {ours:.2f}s, DuckDB reference {duck_s:.2f}s "
            f"({duck_n:,} members), ratio {results['rfm_over_duckdb']}"
        )
    rss.stop()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {out / 'results.json'}")
    from jobs import engine

    engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
