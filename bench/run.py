"""Benchmark the nightly pipeline: full first run, one ordinary night, a rerun.

    python bench/run.py                  # 100k members x 90 days
    python bench/run.py --members 1000000
    python bench/run.py --members 20000 --days 30 --out bench/out/small

Generates (once, cached under --out, in a process of its own) a landing zone of N
members over D days, then measures, each in this one process (the embedded engine runs
in-process, so the process's memory is the whole pipeline's):
  (a) the full first run for day D-1 (days 1..D-1 of history),
  (b) one ordinary nightly run for day D (one new day),
  (c) a rerun of day D.
For every step: wall time, rows in/out, rows per second, and peak RSS. Then a
DuckDB reference of the same scope as our features + rfm steps (silver tables ->
member features + RFM, written out) on the same Delta files, and our time over
DuckDB's; both scopes and check figures are printed. Figures go to --out/results.json,
rewritten after every step (a phase still under way carries ``"running": true``), so a run
stopped from outside keeps what it measured.
With ``--baseline OLD.json`` each step is then compared with that earlier run
(bench/compare.py: ratios, and exit status 1 when a step got more than 1.5x slower).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import deltalake
import numpy as np
import psutil
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _cpu(times) -> float:
    """User + system seconds of a psutil ``cpu_times()``."""
    return times.user + times.system


def _host_busy() -> float:
    """CPU seconds the whole host has spent busy since boot (every core, every process)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class PeakRss:
    """Sample this process's RSS every 50 ms; ``peak`` is the maximum seen since ``reset``.

    Since ``reset`` it also counts CPU seconds (:meth:`cpu_seconds`): this process's and
    its children's (the parse workers, sampled while they live), and what the rest of the
    host used meanwhile (``other``). A shared host's load moves a step's wall time by
    10-25% between identical runs; its own CPU seconds move less, and ``other`` says how
    busy the host was, so two runs' steps are compared knowing both.
    """

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.peak = 0
        self._children: dict[int, tuple[float, float]] = {}  # pid: (at reset or 0, last seen)
        self._lock = threading.Lock()
        self.reset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = self.proc.memory_info().rss
            for child in self.proc.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                    used = _cpu(child.cpu_times())
                except psutil.Error:  # gone between the listing and the look
                    continue
                with self._lock:
                    # A child started during the step counts from its start.
                    first, _ = self._children.get(child.pid, (0.0, used))
                    self._children[child.pid] = (first, used)
            self.peak = max(self.peak, rss)
            time.sleep(0.05)

    def reset(self) -> None:
        self.peak = self.proc.memory_info().rss
        with self._lock:
            # A child living on from the step before counts from its CPU time now.
            self._children = {}
            for child in self.proc.children(recursive=True):
                try:
                    used = _cpu(child.cpu_times())
                except psutil.Error:
                    continue
                self._children[child.pid] = (used, used)
        self._own_cpu = _cpu(self.proc.cpu_times())
        self._host_cpu = _host_busy()

    def cpu_seconds(self) -> tuple[float, float]:
        """(ours, other): CPU seconds since ``reset`` of this process and its children,
        and of every other process on the host."""
        with self._lock:
            children = sum(last - first for first, last in self._children.values())
        ours = _cpu(self.proc.cpu_times()) - self._own_cpu + children
        other = max(0.0, _host_busy() - self._host_cpu - ours)
        return round(ours, 1), round(other, 1)

    def stop(self) -> None:
        self._stop.set()


def host_probe(rows: int = 20_000_000) -> dict:
    """A fixed workload timed before the pipeline: the host's speed at the time of the run.

    Bench runs of different sizes or days are compared through their steps' seconds, but a
    shared host's speed drifts (the same 100k run took 1.6x longer on 2026-12-02 than on
    2026-12-01, and so did DuckDB's reference). Each results.json keeps this probe, so two
    runs' seconds can be put on one host speed (bench/scaling.py prints the factor). The
    workload is one DuckDB query over generated rows (a hash aggregate, a sort), single
    threaded like a step's share of the 2 cores; ``checksum`` proves the same work was done.
    """
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")
    sql = f"""
        WITH t AS (SELECT i % 100003 AS k, (i * 7919) % 1000 AS v FROM range({rows}) r(i))
        SELECT sum(s * n) AS checksum FROM (
            SELECT k, sum(v) AS s, count(*) AS n FROM t GROUP BY k ORDER BY s DESC, k)
    """
    best, checksum = float("inf"), None
    for _ in range(3):
        t0 = time.perf_counter()
        checksum = con.execute(sql).fetchone()[0]
        best = min(best, time.perf_counter() - t0)
    con.close()
    return {"seconds": round(best, 3), "rows": rows, "checksum": int(checksum)}


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
    # In a process of its own: the generator's main process peaks at 18.5 GB at 5M members,
    # and the heap it left here stayed in this process's RSS, counted in every step's peak
    # (the first step of a 1M run: 4.9 GB after generating here, 3.2 GB without).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        summary = pool.submit(
            generate_landing, landing, members=members, days=days, seed=seed, end_date=end
        ).result()
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps(summary, default=str))
    return landing, summary, seconds


# Figures of a step's own result kept with its timing: where an incremental step's time
# went and how much it wrote.
DETAIL = (
    "mode",
    "pool_retry",
    "phase_seconds",
    "parts_seconds",
    "graph_seconds",
    "stage_seconds",
    "rows_changed",
    "golden_members",
    "cc_nodes",
    "chain_check",
    "chain_nodes_checked",
    "identities_changed",
    "orders_rekeyed",
)


def run_phase(
    name: str,
    settings,
    as_of: dt.date,
    rss: PeakRss,
    progress: Callable[[dict], None] = lambda partial: None,
) -> dict:
    """Run one phase; after every step ``progress`` gets the figures measured so far, so a
    run killed from outside (a time limit, the OOM killer) still leaves them behind."""
    from jobs.context import make_context
    from jobs.pipeline import StepFailed, run_pipeline

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
                **dict(zip(("cpu_seconds", "other_cpu_seconds"), rss.cpu_seconds(), strict=True)),
                "detail": {k: result[k] for k in DETAIL if k in result},
            }
        )
        print(
            f"  {name:8} {step.name:10} {seconds:8.2f}s in={rows_in:>11,} out={rows_out:>11,} "
            f"rows/s={steps[-1]['rows_per_s'] or 0:>10,} peak={steps[-1]['peak_rss_mb']:>6,} MB "
            f"cpu={steps[-1]['cpu_seconds']:.1f}s other={steps[-1]['other_cpu_seconds']:.1f}s",
            flush=True,
        )
        rss.reset()
        progress({"as_of": as_of.isoformat(), "steps": steps, "running": True})

    rss.reset()
    t0 = time.perf_counter()
    try:
        run_pipeline(ctx, on_step=on_step)
    except StepFailed as exc:
        # What was measured up to the failure is kept (and written by the caller).
        raise PhaseFailed(name, str(exc), {"as_of": as_of.isoformat(), "steps": steps}) from exc
    total = time.perf_counter() - t0
    peak = max((s["peak_rss_mb"] for s in steps), default=0)
    cpu = {key: round(sum(s[key] for s in steps), 1) for key in ("cpu_seconds", "other_cpu_seconds")}
    print(f"  {name:8} {'TOTAL':10} {total:8.2f}s peak={peak:,} MB cpu={cpu['cpu_seconds']}s "
          f"other={cpu['other_cpu_seconds']}s", flush=True)  # fmt: skip
    return {
        "as_of": as_of.isoformat(),
        "seconds": round(total, 2),
        "peak_rss_mb": peak,
        **cpu,
        "steps": steps,
    }


class PhaseFailed(RuntimeError):
    """A phase's step failed: ``partial`` holds the steps measured before it."""

    def __init__(self, phase: str, error: str, partial: dict) -> None:
        super().__init__(f"{phase}: {error}")
        self.phase, self.error, self.partial = phase, error, partial


# What each side of the RFM comparison computes; printed with the figures so the ratio
# is read for what it is.
OURS_SCOPE = (
    "features + rfm steps of the nightly run: silver/orders (all history, their lines' "
    "totals), members, web_events (7 d) + member_xref -> gold/member_features (every "
    "member: windows 7/30/90/365, returns, gross/discount, night, store/online, median gap, category "
    "shares, views, age, tier) and gold/member_rfm (scores, cell, segment), Delta writes "
    "of D's partition and the steps' read-back figures"
)
DUCK_SCOPE = (
    "DuckDB, same Delta files and date: silver/orders (with their lines' totals), members, "
    "web_events + member_xref -> the same member features and RFM scores/segments/tiers, written to Parquet"
)


def _segment_sql(conf_dir: Path) -> str:
    """CASE over (r_score, fm_score) from conf/rfm.yaml, as gold/member_rfm uses."""
    import yaml

    grid = yaml.safe_load((conf_dir / "rfm.yaml").read_text(encoding="utf-8"))["segments"]
    cells = [
        f"WHEN r_score = {r} AND fm_score = {fm} THEN '{name}'"
        for r, row in grid.items()
        for fm, name in enumerate(row, start=1)
    ]
    return "CASE " + " ".join(cells) + " END"


def deleted_positions(table: deltalake.DeltaTable) -> pa.Table:
    """(filename, file_row_number) of the rows deletion vectors mark deleted in delta-rs
    ``table``'s version, file names as :meth:`DeltaTable.file_uris` gives them."""
    names: list[str] = []
    rows: list[int] = []
    if "deletionVectors" in (table.protocol().reader_features or []):
        vectors = pa.table(table.deletion_vectors().read_all())
        paths, keeps = vectors["filepath"].to_pylist(), vectors["selection_vector"].to_pylist()
        for uri, keep in zip(paths, keeps, strict=True):
            gone = np.flatnonzero(~np.asarray(keep, dtype=bool)).tolist()
            names += [uri.removeprefix("file://")] * len(gone)
            rows += gone
    return pa.table(
        {"filename": pa.array(names, pa.string()), "file_row_number": pa.array(rows, pa.int64())}
    )


def duckdb_rfm(lake: Path, as_of: dt.date, out: Path) -> tuple[float, dict]:
    """Silver -> member features + RFM in DuckDB over the same Delta files.

    The same scope as our features + rfm steps (see DUCK_SCOPE): returns (seconds,
    check figures) where the figures (members, buyers, sum of monetary, category
    lovers) let the reader see both sides did the same work.
    """
    import duckdb
    from deltalake import DeltaTable

    from jobs.gold.conf import FeatureWindows, load_features, load_rfm

    def files(table: str) -> list[str]:
        return [u.removeprefix("file://") for u in DeltaTable(str(lake / table)).file_uris()]

    def hive(table: str) -> str:
        """Partition values come from the file paths (Delta keeps them out of the files)."""
        return "true" if DeltaTable(str(lake / table)).metadata().partition_columns else "false"

    def live(table: str, files_param: str) -> str:
        """``table``'s rows as a FROM item: its files, less the rows its deletion vectors
        mark deleted (a re-keyed order's copy from before; jobs.lake.DELETION_VECTORS),
        by file name and row number, a small table registered for it."""
        scan = f"read_parquet(${files_param}, hive_partitioning = {hive(table)}"
        gone = deleted_positions(DeltaTable(str(lake / table)))
        if gone.num_rows == 0:
            return scan + ")"
        name = "deleted_" + table.replace("/", "_")
        con.register(name, gone)
        numbered = f"{scan}, filename = true, file_row_number = true)"
        return f"{numbered} ANTI JOIN {name} USING (filename, file_row_number)"

    con = duckdb.connect()
    orders = live("silver/orders", "orders")
    con.execute("SET TimeZone = 'Asia/Shanghai'")  # store-local hours, as the pipeline
    con.execute("SET enable_progress_bar = false")
    d = f"DATE '{as_of.isoformat()}'"
    # Thresholds from the same conf files as the pipeline.
    fconf, rconf = load_features(), load_rfm()
    h0, h1 = fconf.night_start_hour, fconf.night_end_hour
    op = "OR" if h0 > h1 else "AND"
    night = f"(hour(order_ts) >= {h0} {op} hour(order_ts) < {h1})"
    tier = " ".join(f"WHEN monetary_365d >= {t.min_monetary} THEN '{t.name}'" for t in rconf.tiers)
    if fconf.windows != FeatureWindows():
        raise SystemExit("bench: the DuckDB reference is written for the default feature windows")
    since = {n: f"{d} - {n - 1}" for n in (7, 30, 90, 180, 365)}
    win = "".join(
        f"""
        count(*) FILTER (WHERE p AND order_date >= {since[n]}) AS frequency_{n}d,
        coalesce(sum(amt) FILTER (WHERE p AND order_date >= {since[n]}), 0) AS spend_{n}d,
        coalesce(sum(amt) FILTER (WHERE r AND order_date >= {since[n]}), 0) AS returns_{n}d,"""
        for n in (7, 30, 90, 365)
    )
    sql = f"""
    COPY (
    WITH o AS (
      SELECT DISTINCT order_id, channel, member_id, is_online, txn_type,
             coalesce(is_purchase, false) AS p,
             txn_type = 'RETURN' AND NOT coalesce(is_purchase, false) AS r,
             order_ts, order_date, gross_amount, discount_amount,
             coalesce(net_amount, 0) AS amt
      FROM {orders}
      WHERE member_id IS NOT NULL AND order_date <= {d}),
    g AS (
      SELECT member_id,
        date_diff('day', lag(order_date) OVER (PARTITION BY member_id
                  ORDER BY order_ts, order_id, channel), order_date) AS gap
      FROM o WHERE p),
    gm AS (SELECT member_id, median(gap) AS median_gap_days FROM g GROUP BY member_id),
    oa AS (
      SELECT member_id,
        min(order_date) FILTER (WHERE p) AS first_purchase_date,
        max(order_date) FILTER (WHERE p) AS last_purchase_date,
        count(*) FILTER (WHERE p) AS frequency_total,{win}
        coalesce(sum(amt) FILTER (WHERE p AND order_date >= {since[180]}
                                  AND order_date < {since[90]}), 0) AS spend_prev_90d,
        count(*) FILTER (WHERE r AND order_date >= {since[365]}) AS returns_count_365d,
        count(*) FILTER (WHERE p AND order_date >= {since[365]} AND NOT is_online)
          AS store_purchases_365d,
        count(*) FILTER (WHERE p AND order_date >= {since[365]} AND is_online)
          AS online_purchases_365d,
        coalesce(sum(gross_amount) FILTER (WHERE p AND order_date >= {since[365]}
                                           AND NOT is_online), 0) AS gross_365d,
        coalesce(sum(discount_amount) FILTER (WHERE p AND order_date >= {since[365]}
                                              AND NOT is_online), 0) AS discount_365d,
        count(*) FILTER (WHERE p AND order_date >= {since[365]}
                         AND {night}) AS night_365d
      FROM o GROUP BY member_id),
    lt AS (
      SELECT DISTINCT order_id, channel, member_id, line_totals
      FROM {orders}
      WHERE member_id IS NOT NULL AND order_date <= {d}),
    l AS (
      SELECT member_id, t.order_date AS order_date, t.category AS category,
             coalesce(t.net_amount, 0) AS amt
      FROM (SELECT member_id, unnest(line_totals) AS t FROM lt)
      WHERE coalesce(t.is_purchase, false) AND t.order_date BETWEEN {since[365]} AND {d}),
    bc AS (
      SELECT member_id, category, sum(amt) AS spend,
             bool_or(order_date >= {since[90]}) AS in_90d
      FROM l GROUP BY member_id, category),
    ca AS (
      SELECT member_id, sum(spend) AS category_spend_365d,
        map_from_entries(list((category, spend::DOUBLE)) FILTER (WHERE category IS NOT NULL))
          AS _spend,
        arg_min(category, (-spend, category)) FILTER (WHERE category IS NOT NULL)
          AS top_category,
        max(spend) FILTER (WHERE category IS NOT NULL) AS top_spend,
        count(*) FILTER (WHERE in_90d AND category IS NOT NULL) AS distinct_categories_90d
      FROM bc GROUP BY member_id),
    va AS (
      SELECT coalesce(u.member_id, a.member_id) AS member_id,
             count(DISTINCT event_id) AS product_views_7d
      FROM read_parquet($events, hive_partitioning = {hive("silver/web_events")}) e
      LEFT JOIN (SELECT source_key, member_id FROM read_parquet($xref)
                 WHERE source = 'web_user' AND member_id IS NOT NULL) u
        ON u.source_key = e.user_key
      LEFT JOIN (SELECT source_key, member_id FROM read_parquet($xref)
                 WHERE source = 'web_anon' AND member_id IS NOT NULL) a
        ON a.source_key = e.anon_key
      WHERE coalesce(u.member_id, a.member_id) IS NOT NULL AND event_type = 'product_view'
        AND event_date BETWEEN {since[7]} AND {d}
      GROUP BY 1),
    m AS (
      SELECT DISTINCT member_id, first_seen, is_registered, status, home_store_id,
             birth_year, birth_month, opt_in_sms, opt_in_email, opt_in_push
      FROM read_parquet($members, hive_partitioning = {hive("silver/members")})),
    f AS (
      SELECT m.*, oa.* EXCLUDE (member_id), gm.median_gap_days,
        ca.category_spend_365d, ca.top_category, ca.distinct_categories_90d,
        CASE WHEN ca.category_spend_365d > 0 THEN map_from_entries(
          list_transform(map_entries(ca._spend),
                         lambda e: (e.key, e.value / ca.category_spend_365d::DOUBLE)))
        END AS category_shares_365d,
        CASE WHEN ca.category_spend_365d > 0
          THEN ca.top_spend::DOUBLE / ca.category_spend_365d::DOUBLE END AS top_category_share,
        coalesce(va.product_views_7d, 0) AS product_views_7d,
        {d} AS as_of_date,
        date_diff('day', oa.first_purchase_date, {d}) AS days_since_first_purchase,
        date_diff('day', oa.last_purchase_date, {d}) AS recency_days,
        round(oa.spend_365d - oa.returns_365d, 2) AS monetary_365d,
        round(oa.spend_90d - oa.returns_90d, 2) AS monetary_90d,
        round(oa.spend_30d - oa.returns_30d, 2) AS monetary_30d,
        round(oa.spend_7d - oa.returns_7d, 2) AS monetary_7d,
        CASE WHEN oa.frequency_365d > 0 THEN round(oa.spend_365d / oa.frequency_365d, 2)
          END AS aov_365d,
        CASE WHEN oa.spend_prev_90d <> 0 THEN oa.spend_90d::DOUBLE / oa.spend_prev_90d::DOUBLE
          END AS monetary_trend,
        CASE WHEN oa.gross_365d > 0 THEN oa.discount_365d::DOUBLE / oa.gross_365d::DOUBLE
          END AS discount_share_365d,
        CASE WHEN oa.frequency_365d > 0 THEN oa.night_365d / oa.frequency_365d
          END AS night_share_365d,
        CASE {tier} ELSE '{rconf.default_tier}' END AS tier,
        year({d}) - m.birth_year - CASE WHEN month({d}) < m.birth_month THEN 1 ELSE 0 END
          AS age
      FROM m FULL JOIN oa USING (member_id)
      LEFT JOIN gm USING (member_id) LEFT JOIN ca USING (member_id)
      LEFT JOIN va USING (member_id)
      WHERE m.first_seen <= {d} OR m.first_seen IS NULL OR oa.frequency_total IS NOT NULL),
    s AS (
      SELECT *,
        CASE WHEN frequency_365d >= 1 THEN least(5, 1 + floor(5 * (rank() OVER (
          PARTITION BY frequency_365d >= 1 ORDER BY recency_days DESC) - 1) / count(*) OVER (
          PARTITION BY frequency_365d >= 1)))::INTEGER ELSE 1 END AS r_score,
        CASE WHEN frequency_365d >= 1 THEN least(5, 1 + floor(5 * (rank() OVER (
          PARTITION BY frequency_365d >= 1 ORDER BY frequency_365d) - 1) / count(*) OVER (
          PARTITION BY frequency_365d >= 1)))::INTEGER ELSE 1 END AS f_score,
        CASE WHEN frequency_365d >= 1 THEN least(5, 1 + floor(5 * (rank() OVER (
          PARTITION BY frequency_365d >= 1 ORDER BY monetary_365d) - 1) / count(*) OVER (
          PARTITION BY frequency_365d >= 1)))::INTEGER ELSE 1 END AS m_score
      FROM f WHERE first_purchase_date IS NOT NULL)
    SELECT f.*, s.r_score, s.f_score, s.m_score, s.fm_score, s.rfm_segment
    FROM f LEFT JOIN (
      SELECT *, {_segment_sql(ROOT / "conf")} AS rfm_segment
      FROM (SELECT *, (f_score + m_score + 1) // 2 AS fm_score FROM s)
    ) s USING (member_id)
    ) TO '{out}' (FORMAT parquet)"""
    t0 = time.perf_counter()
    con.execute(
        sql,
        {
            "orders": files("silver/orders"),
            "events": files("silver/web_events"),
            "xref": files("silver/member_xref"),
            "members": files("silver/members"),
        },
    )
    seconds = time.perf_counter() - t0
    row = con.execute(
        f"""SELECT count(*), count(r_score), sum(monetary_365d) FILTER (WHERE r_score IS NOT NULL),
                  count(*) FILTER (WHERE top_category_share >= 0.6)
           FROM read_parquet('{out}')"""
    ).fetchone()
    check = {
        "members": row[0],
        "buyers": row[1],
        "monetary_365d_sum": float(row[2] or 0),
        "category_lovers": row[3],
    }
    return seconds, check


def ours_check(lake: Path, as_of: dt.date) -> dict:
    """The same check figures from our gold tables of ``as_of`` (see :func:`duckdb_rfm`)."""
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    feats = DeltaTable(str(lake / "gold/member_features")).to_pyarrow_dataset()
    rfm = DeltaTable(str(lake / "gold/member_rfm")).to_pyarrow_dataset()
    d = f"DATE '{as_of.isoformat()}'"
    con.register("feats", feats)
    con.register("rfm", rfm)
    row = con.execute(
        f"""SELECT (SELECT count(*) FROM feats WHERE as_of_date = {d}),
                  (SELECT count(*) FROM rfm WHERE as_of_date = {d}),
                  (SELECT sum(monetary) FROM rfm WHERE as_of_date = {d}),
                  (SELECT count(*) FROM feats WHERE as_of_date = {d}
                     AND top_category_share >= 0.6)"""
    ).fetchone()
    return {
        "members": row[0],
        "buyers": row[1],
        "monetary_365d_sum": float(row[2] or 0),
        "category_lovers": row[3],
    }


# The engine settings each results.json records (jobs.config.EngineConf).
ENGINE_FIGURES = {
    "kind",
    "memory_limit_mb",
    "hash_join_memory_limit_mb",
    "joins",
    "hash_join_steps",
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument(
        "--baseline",
        type=Path,
        help="an earlier results.json of the same size: print each step's ratio to it and "
        "exit 1 on a step over 1.5x (bench/compare.py)",
    )
    args = ap.parse_args()

    from jobs.config import CONF_DIR, load_settings, with_paths

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
    probe = host_probe()
    print(f"host probe: {probe['seconds']} s (bench/run.py host_probe)", flush=True)
    results: dict = {
        "members": args.members,
        "days": args.days,
        "host_probe": probe,
        "generate_seconds": round(gen_s, 1),
        "landing_summary": summary,
        # What the figures ran under: 5M needs a bigger hash-join pool than the default
        # (CDP_CONF_DIR=<a copy of conf/ with engine.hash_join_memory_limit_mb: 8192>).
        "conf_dir": str(CONF_DIR),
        "engine": settings.engine.model_dump(include=ENGINE_FIGURES),
    }
    phases = (
        ("a_full_first_run", "full", end - dt.timedelta(days=1)),
        ("b_nightly", "nightly", end),
        ("c_rerun", "rerun", end),
    )

    def save(key: str) -> Callable[[dict], None]:
        def write(partial: dict) -> None:
            (out / "results.json").write_text(
                json.dumps({**results, key: partial}, indent=2, default=str)
            )

        return write

    for key, name, as_of in phases:
        try:
            results[key] = run_phase(name, settings, as_of, rss, progress=save(key))
        except PhaseFailed as failed:
            # A failed step is a result too: keep what was measured and say where it stopped.
            results[key] = {**failed.partial, "failed": failed.error}
            (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
            print(f"{failed}\nPartial figures in {out / 'results.json'}", file=sys.stderr)
            return 2
    a, b = results["a_full_first_run"]["seconds"], results["b_nightly"]["seconds"]
    results["nightly_over_full"] = round(b / a, 4) if a else None
    print(f"nightly / full = {results['nightly_over_full']}")

    if not args.skip_duckdb:
        ours = sum(
            s["seconds"] for s in results["b_nightly"]["steps"] if s["step"] in ("features", "rfm")
        )
        duck_s, duck_check = duckdb_rfm(run_dir / "lake", end, run_dir / "duckdb_features.parquet")
        results["duckdb_rfm_seconds"] = round(duck_s, 2)
        results["duckdb_check"] = duck_check
        results["our_check"] = ours_check(run_dir / "lake", end)
        results["our_rfm_seconds"] = round(ours, 2)
        results["rfm_over_duckdb"] = round(ours / duck_s, 2) if duck_s else None
        results["rfm_scope"] = {"ours": OURS_SCOPE, "duckdb": DUCK_SCOPE}
        print(f"RFM ours:   {ours:.2f}s = {OURS_SCOPE}")
        print(f"RFM DuckDB: {duck_s:.2f}s = {DUCK_SCOPE}")
        print(f"  check ours   {results['our_check']}")
        print(f"  check DuckDB {duck_check}")
        print(f"RFM ratio ours / DuckDB = {results['rfm_over_duckdb']}")
    rss.stop()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"figures written to {out / 'results.json'}")
    from jobs import engine

    engine.stop()
    if args.baseline:
        from bench.compare import main as compare

        return compare([str(args.baseline), str(out / "results.json")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
