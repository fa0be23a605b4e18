"""The points section of the run report: balances, points by month, redemption rate
against its target, and a table of totals; no points panels without a loyalty ledger."""

from __future__ import annotations

import datetime as dt

from jobs.gold import points
from jobs.report import html as report
from tests.gold.test_points import ledger_row, write_ledger
from tests.report.test_html import _figure_data, _write

D = dt.date(2026, 3, 9)
TITLES = (
    "Points balances",
    "Points earned, redeemed and expired by month",
    "Points redemption rate (365 days) against its target",
)


def _page(ctx) -> str:
    report.run(ctx)
    return (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text("utf-8")


def test_points_section_draws_balances_months_and_the_rate(make_ctx):
    ctx = make_ctx(D)
    write_ledger(
        ctx,
        [
            ledger_row(1, "A", -40, "EARN", 6000, base=D),  # A: 6000 - 500 = 5500
            ledger_row(2, "A", -1, "REDEEM", 500, base=D),
            ledger_row(3, "B", -3, "EARN", 150, expire=10, base=D),  # B: 150, all expiring
            ledger_row(4, "C", -400, "EARN", 10, base=D),  # C: earned over a year ago...
            ledger_row(5, "C", -2, "EXPIRE", 10, base=D),  # ... and expired: balance 0
        ],
    )
    points.run(ctx)
    rates = [
        {"as_of_date": D - dt.timedelta(days=i), "points_redemption_rate": 0.5 - i / 100}
        for i in range(3)
    ]
    _write(ctx, "gold/kpi_daily", rates)
    page = _page(ctx)
    for title in TITLES:
        assert title in page, title
    balances, monthly, rate = _figure_data(page)[-3:]
    assert (balances[0]["x"], balances[0]["y"]) == (["0", "100-499", "5,000+"], [1, 1, 1])
    by_kind = {t["name"]: dict(zip(t["x"], t["y"], strict=True)) for t in monthly}
    assert by_kind["earned"] == {"2026-01": 6000, "2026-03": 150}
    assert by_kind["redeemed"]["2026-03"] == 500 and by_kind["expired"]["2026-03"] == 10
    assert rate[0]["y"] == [0.48, 0.49, 0.5] and rate[1]["y"] == [0.55, 0.55]
    assert "<h2>Points programme</h2>" in page
    assert "<td>points expiring in 30 days</td><td>150</td>" in page


def test_no_points_panels_without_a_ledger(make_ctx):
    page = _page(make_ctx(D))
    assert not any(title in page for title in TITLES)
    assert "Points programme" not in page


def test_the_whole_page_is_one_query(make_ctx, spark):
    """Charts, tables and the points section come from one Spark query (jobs.collect),
    not a query per aggregate: on a JVM engine each costs ~0.5 CPU s whatever its rows."""
    import pytest
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from bench.count_queries import counting
    from tests.report.test_html import write_day

    if not isinstance(spark, ConnectSession):
        pytest.skip("counted through the Spark Connect client (the embedded engine)")
    ctx = make_ctx(D)
    write_day(ctx)
    write_ledger(ctx, [ledger_row(1, "A", -3, "EARN", 150, base=D)])
    points.run(ctx)
    with counting() as counter:
        page = _page(ctx)
    assert all(title in page for title in TITLES) and "Lifecycle stages" in page
    assert counter.executions() == 1, counter.by_site
