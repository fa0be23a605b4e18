"""The seed KPIs against their targets: the report's chart and `cdp kpis --date D`.

Input: the history of gold/kpi_daily (one row per as_of_date, at most a few hundred
rows) as a pandas frame; targets from conf/kpis.yaml. A target given as a change over
the first value on record (e.g. "LTV up 40%") is resolved from that history.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.gold.kpis import SEED_KPIS, KpisConf, load_kpis

TREND_RUNS = 90  # dates drawn in the report


def _known(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def history_query(kpi: DataFrame, as_of: dt.date) -> DataFrame:
    """gold/kpi_daily up to D, ``as_of_date`` and the seed KPI columns (a row per date)."""
    cols = [c for c in SEED_KPIS if c in kpi.columns]
    return kpi.where(F.col("as_of_date") <= F.lit(as_of)).select("as_of_date", *cols)


def history_frame(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`history_query` as a frame sorted by date (every seed KPI column
    when there is no row)."""
    columns = list(rows[0]) if rows else ["as_of_date", *SEED_KPIS]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("as_of_date", ignore_index=True)


def history_from_spark(kpi: DataFrame, as_of: dt.date) -> pd.DataFrame:
    """gold/kpi_daily up to D, the seed KPI columns (a row per date, sorted)."""
    return history_frame([r.asDict() for r in history_query(kpi, as_of).collect()])


def history_from_lake(lake: Path | str, as_of: dt.date) -> pd.DataFrame:
    """The same from the Delta table itself (delta-rs: no Spark session for the CLI)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    path = Path(lake) / "gold" / "kpi_daily"
    try:
        frame = DeltaTable(str(path)).to_pandas()
    except TableNotFoundError:
        raise ValueError(f"no gold/kpi_daily in lake {lake}: run `cdp run` first") from None
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.date
    cols = [c for c in SEED_KPIS if c in frame.columns]
    frame = frame.loc[frame["as_of_date"] <= as_of, ["as_of_date", *cols]]
    return frame.sort_values("as_of_date", ignore_index=True)


def first_on_record(history: pd.DataFrame) -> dict[str, float | None]:
    """Each KPI's first non-null value in ``history`` (the baseline of `baseline: first`)."""
    out: dict[str, float | None] = {}
    for name in SEED_KPIS:
        known = history[name].dropna() if name in history else pd.Series(dtype=float)
        out[name] = float(known.iloc[0]) if len(known) else None
    return out


def kpi_gaps(history: pd.DataFrame, as_of: dt.date, conf: KpisConf) -> list[dict]:
    """One dict per seed KPI on D: value, target, gap (value - target) and whether it is met."""
    today = history[history["as_of_date"] == as_of]
    if today.empty:
        raise ValueError(f"gold/kpi_daily has no row for {as_of}: run `cdp run --date {as_of}`")
    row = today.iloc[-1]
    firsts = first_on_record(history)
    out = []
    for name in SEED_KPIS:
        spec = conf.targets[name]
        value = row.get(name)
        value = float(value) if _known(value) else None
        target = spec.resolve(firsts[name])
        gap = value - target if value is not None and target is not None else None
        met = None if gap is None else (gap >= 0 if spec.better == "higher" else gap <= 0)
        out.append(
            {
                "kpi": name,
                "value": value,
                "target": target,
                "gap": gap,
                "better": spec.better,
                "met": met,
                "note": spec.note if value is None else "",
            }
        )
    return out


def _fmt(value: float | None, name: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if name == "clv_365d_avg" else f"{value:.1%}"


def gaps_table(rows: list[dict]) -> str:
    """Plain text table of :func:`kpi_gaps` (fixed width, never wrapped)."""
    header = ("kpi", "value", "target", "gap", "status")
    lines = [
        (
            r["kpi"],
            _fmt(r["value"], r["kpi"]),
            _fmt(r["target"], r["kpi"]),
            "-" if r["gap"] is None else ("+" if r["gap"] >= 0 else "") + _fmt(r["gap"], r["kpi"]),
            {True: "on target", False: "below" if r["better"] == "higher" else "above"}.get(
                r["met"], r["note"] or "no value"
            ),
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:{'<' if i in (0, 4) else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*x).rstrip() for x in [header, *lines])


def kpis_table(lake: Path | str, as_of: dt.date) -> str:
    """`cdp kpis --date D`: the seed KPIs of D with their targets and gaps."""
    history = history_from_lake(lake, as_of)
    return f"KPIs on {as_of} (targets: conf/kpis.yaml)\n" + gaps_table(
        kpi_gaps(history, as_of, load_kpis())
    )


def fig_kpi_targets(history: pd.DataFrame, as_of: dt.date, conf: KpisConf):
    """One small panel per seed KPI: its trend over the last runs and its target line."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = f"KPIs against their targets (last {TREND_RUNS} runs)"
    recent = history.tail(TREND_RUNS)
    firsts = first_on_record(history)
    cols = 3
    rows = math.ceil(len(SEED_KPIS) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=SEED_KPIS, vertical_spacing=0.08)
    x = [str(d) for d in recent["as_of_date"]]
    for i, name in enumerate(SEED_KPIS):
        r, c = i // cols + 1, i % cols + 1
        y = [v if _known(v) else None for v in recent.get(name, pd.Series([None] * len(x)))]
        fig.add_trace(
            go.Scatter(x=x, y=y, mode="lines+markers", name=name, showlegend=False),
            row=r,
            col=c,
        )
        target = conf.targets[name].resolve(firsts[name])
        if target is not None and x:
            fig.add_trace(
                go.Scatter(
                    x=[x[0], x[-1]] if len(x) > 1 else x,
                    y=[target] * (2 if len(x) > 1 else 1),
                    mode="lines+markers" if len(x) == 1 else "lines",
                    line={"dash": "dash", "color": "#d62728"},
                    name="target",
                    showlegend=i == 0,
                ),
                row=r,
                col=c,
            )
        fig.update_yaxes(tickformat=",.0f" if name == "clv_365d_avg" else ".0%", row=r, col=c)
    fig.update_xaxes(type="category", nticks=4)
    fig.update_layout(title=title, height=260 * rows, legend={"orientation": "h"})
    return fig


def figures(history: pd.DataFrame, as_of: dt.date) -> list:
    """The report's KPI-target figures from gold/kpi_daily's history (:func:`history_frame`;
    hooked into jobs/report/html.py)."""
    return [fig_kpi_targets(history, as_of, load_kpis())]
