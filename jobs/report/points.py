"""The points section of the run report (hooked into jobs/report/html.py).

Three panels when the lake has a loyalty ledger (none otherwise): members by points
balance on D (gold/member_points), points earned, redeemed and expired per month over
[D-364, D] (silver/points_ledger, every row, members found or not), and the KPI
points_redemption_rate over the last runs against its target (gold/kpi_daily,
conf/kpis.yaml). A small table adds the totals and the POS orders whose points differ
from the ledger (meta/points_reconciliation of D).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.gold.kpis import load_kpis
from jobs.lake import Lake
from jobs.report.kpi_targets import TREND_RUNS, first_on_record

LEDGER, MEMBER_POINTS = "silver/points_ledger", "gold/member_points"
RECONCILIATION = "meta/points_reconciliation"
# (label, lowest balance in the bucket); a balance falls in the last bucket it reaches.
BALANCE_BUCKETS = (
    ("< 0", None),
    ("0", 0),
    ("1-99", 1),
    ("100-499", 100),
    ("500-999", 500),
    ("1,000-4,999", 1000),
    ("5,000+", 5000),
)
KINDS = ("EARN", "REDEEM", "EXPIRE")


# ---- pure aggregates (DataFrame in, small DataFrame out) ------------------------------


def balance_buckets(member_points: DataFrame) -> DataFrame:
    """Members per balance bucket; input gold/member_points of one as_of_date."""
    bucket = F.lit(BALANCE_BUCKETS[0][0])
    for label, low in BALANCE_BUCKETS[1:]:
        bucket = F.when(F.col("balance") >= low, F.lit(label)).otherwise(bucket)
    return member_points.groupBy(bucket.alias("bucket")).agg(F.count(F.lit(1)).alias("members"))


def monthly_points(ledger: DataFrame, as_of: dt.date, days: int = 365) -> DataFrame:
    """EARN, REDEEM and EXPIRE points per month of txn_date in [D-(days-1), D]; input
    silver/points_ledger (one transaction). Output grain: month x txn_type."""
    first = as_of - dt.timedelta(days=days - 1)
    return (
        ledger.where(F.col("txn_date").between(F.lit(first), F.lit(as_of)))
        .where(F.col("txn_type").isin(*KINDS))
        .groupBy(F.date_format("txn_date", "yyyy-MM").alias("month"), "txn_type")
        .agg(F.sum("points").cast("long").alias("points"))
    )


# ---- figures --------------------------------------------------------------------------


def fig_balances(rows: list[dict]):
    import plotly.graph_objects as go

    counts = {r["bucket"]: int(r["members"]) for r in rows}
    labels = [label for label, _ in BALANCE_BUCKETS if label in counts]
    fig = go.Figure(
        go.Bar(x=labels, y=[counts[k] for k in labels], text=[counts[k] for k in labels])
    )
    fig.update_xaxes(type="category", title_text="points balance on D")
    fig.update_layout(title="Points balances (members with a ledger entry)", height=360)
    fig.update_yaxes(title_text="members")
    return fig


def fig_monthly(rows: list[dict]):
    import plotly.graph_objects as go

    months = sorted({r["month"] for r in rows})
    fig = go.Figure()
    for kind, name in zip(KINDS, ("earned", "redeemed", "expired"), strict=True):
        by_month = {r["month"]: int(r["points"]) for r in rows if r["txn_type"] == kind}
        fig.add_trace(go.Bar(x=months, y=[by_month.get(m, 0) for m in months], name=name))
    fig.update_xaxes(type="category")
    fig.update_layout(
        title="Points earned, redeemed and expired by month (365 days)",
        barmode="group",
        height=360,
        legend={"orientation": "h"},
        yaxis_title="points",
    )
    return fig


def fig_redemption_rate(history, target: float | None):
    import plotly.graph_objects as go

    recent = history.tail(TREND_RUNS)
    x = [str(d) for d in recent["as_of_date"]]
    y = [None if v != v else v for v in recent["points_redemption_rate"]]  # NaN -> gap
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines+markers", name="redemption rate"))
    if target is not None and x:
        ends = [x[0], x[-1]]
        fig.add_trace(
            go.Scatter(
                x=ends,
                y=[target, target],
                mode="lines+markers",
                name=f"target {target:.0%}",
                line={"dash": "dash", "color": "#d62728"},
            )
        )
    fig.update_xaxes(type="category", nticks=6)
    fig.update_layout(
        title="Points redemption rate (365 days) against its target",
        height=360,
        legend={"orientation": "h"},
        yaxis={"tickformat": ".0%", "rangemode": "tozero"},
    )
    return fig


def queries(lake: Lake, as_of: dt.date) -> dict[str, DataFrame]:
    """The small aggregates of the points panels and table for D, by name (none without a
    loyalty ledger); the report collects them with its other figures in one query."""
    parts: dict[str, DataFrame] = {}
    if lake.exists(LEDGER):
        parts["points_monthly"] = monthly_points(lake.read(LEDGER), as_of)
    if lake.exists(MEMBER_POINTS):
        on_d = lake.read(MEMBER_POINTS).where(F.col("as_of_date") == F.lit(as_of))
        parts["points_balances"] = balance_buckets(on_d)
        parts["points_totals"] = on_d.agg(
            F.count(F.lit(1)).alias("members"),
            F.sum("balance").alias("balance"),
            F.sum("expiring_30d").alias("expiring"),
            F.count(F.when(F.col("balance") < 0, F.lit(1))).alias("negative"),
        )
    if lake.exists(RECONCILIATION):
        on_d = lake.read(RECONCILIATION).where(F.col("as_of_date") == F.lit(as_of))
        parts["points_differ"] = on_d.agg(F.count(F.lit(1)).alias("orders"))
    return parts


def figures(rows: dict[str, list[dict]], history: pd.DataFrame | None) -> list:
    """The points panels of the report for D; none on a lake without a loyalty ledger.

    ``rows``: the results of :func:`queries`; ``history``: gold/kpi_daily up to D
    (jobs.report.kpi_targets.history_frame), None when the lake has none.
    """
    if "points_monthly" not in rows:
        return []
    figs = [fig_monthly(rows["points_monthly"])]
    if "points_balances" in rows:
        figs.insert(0, fig_balances(rows["points_balances"]))
    if history is not None:
        spec = load_kpis().targets["points_redemption_rate"]
        target = spec.resolve(first_on_record(history)["points_redemption_rate"])
        figs.append(fig_redemption_rate(history, target))
    return figs


def summary(rows: dict[str, list[dict]]) -> list[list]:
    """[figure, value] rows of the points table under the charts (empty without
    gold/member_points); ``rows``: the results of :func:`queries`."""
    if "points_totals" not in rows:
        return []
    totals = rows["points_totals"][0]
    table = [
        ["members with points", totals["members"]],
        ["points held (balance)", totals["balance"]],
        ["points expiring in 30 days", totals["expiring"]],
        ["members with a negative balance", totals["negative"]],
    ]
    if "points_differ" in rows:
        table.append(
            ["POS orders whose points differ from the ledger", rows["points_differ"][0]["orders"]]
        )
    return table
