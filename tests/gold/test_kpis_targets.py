"""`cdp kpis --date D` and the report's KPI-target chart, on a small gold/kpi_daily."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from jobs.gold.kpis import SEED_KPIS, load_kpis
from jobs.report.kpi_targets import fig_kpi_targets, history_from_lake, kpi_gaps

D = dt.date(2026, 6, 30)


def _history() -> pd.DataFrame:
    rows = []
    for back, mau, clv in ((2, 0.50, None), (1, 0.55, 200.0), (0, 0.62, 250.0)):
        row = {k: 0.5 for k in SEED_KPIS}
        row.update(
            as_of_date=D - dt.timedelta(days=back),
            mau_share=mau,
            clv_365d_avg=clv,
            duplicate_rate=0.01,
            points_redemption_rate=None,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _write_history(path: str) -> None:
    """_history() as a Delta table at ``path`` (delta-rs: only the seed KPI columns)."""
    from deltalake import write_deltalake

    frame = _history()
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
    frame["points_redemption_rate"] = frame["points_redemption_rate"].astype("float64")
    write_deltalake(path, frame)


def _lake(tmp_path) -> str:
    _write_history(str(tmp_path / "lake" / "gold" / "kpi_daily"))
    return str(tmp_path / "lake")


def test_gaps_against_targets():
    gaps = {g["kpi"]: g for g in kpi_gaps(_history(), D, load_kpis())}
    assert list(gaps) == list(SEED_KPIS)
    mau = gaps["mau_share"]
    assert (mau["value"], mau["target"], mau["met"]) == (0.62, 0.60, True)
    assert mau["gap"] == pytest.approx(0.02)
    assert gaps["cross_channel_share"]["met"] is False  # 0.50 below 0.65
    assert gaps["duplicate_rate"]["met"] is True  # lower is better: 0.01 <= 0.02
    # LTV up 40% over the first value on record (200 on D-1): target 280, 250 is below.
    clv = gaps["clv_365d_avg"]
    assert clv["target"] == pytest.approx(280.0) and clv["met"] is False
    points = gaps["points_redemption_rate"]
    assert points["value"] is None and points["met"] is None and "ledger" in points["note"]


def test_cdp_kpis_prints_the_table(tmp_path):
    lake = _lake(tmp_path)
    assert len(history_from_lake(lake, D)) == 3
    result = CliRunner().invoke(app, ["kpis", "--date", D.isoformat(), "--lake", lake])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert set(lines) == set(SEED_KPIS)
    assert lines["mau_share"].split()[1:] == ["62.0%", "60.0%", "+2.0%", "on", "target"]
    assert lines["clv_365d_avg"].split()[1:4] == ["250.00", "280.00", "-30.00"]
    assert "below" in lines["clv_365d_avg"]
    assert "ledger" in lines["points_redemption_rate"]
    missing = CliRunner().invoke(app, ["kpis", "--date", "2026-07-01", "--lake", lake])
    assert missing.exit_code != 0
    assert "no row for 2026-07-01" in str(missing.exception or missing.output)


def test_report_chart_draws_each_kpi_and_its_target_line():
    fig = fig_kpi_targets(_history(), D, load_kpis())
    series = [t for t in fig.data if t.name in SEED_KPIS]
    targets = [t for t in fig.data if t.name == "target"]
    assert [t.name for t in series] == list(SEED_KPIS)
    # Every KPI with a target gets a dashed line at it (clv: 40% over its first value).
    assert len(targets) == len(SEED_KPIS)
    assert {round(t.y[0], 6) for t in targets} >= {0.6, 0.45, 0.995, 280.0}
    one_point = fig_kpi_targets(_history().tail(1), D, load_kpis())
    assert all(len(t.x) == 1 and "markers" in t.mode for t in one_point.data)


def test_the_run_report_holds_the_kpi_target_chart(make_ctx):
    from jobs.report import html as report

    ctx = make_ctx(D)
    _write_history(ctx.lake.path("gold/kpi_daily"))
    report.run(ctx)
    page = (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert "KPIs against their targets" in page
    assert '"name":"target"' in page.replace(" ", "")
