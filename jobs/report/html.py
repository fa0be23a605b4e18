"""The run report: ``<exports>/<D>/report.html``, listed in that folder's manifest.json.

Charts (plotly): the page loads plotly.js from ``<exports>/_assets/plotly-<version>.min.js``
(relative link, so the exports folder can be moved or shared whole and still works
offline), written once per plotly.js version rather than inlined in every day's page
(4.8 MB a day otherwise). Charts fill their panel at any width (responsive plotly, a CSS
grid of panels at least 480 px wide, one column on narrow screens). R x F
heatmap of member counts, lifecycle distribution and transitions, tier mix, KPI
trend over the last 30 runs, quarantine rates by source and rule, identity resolution
(members by linked identities, merges and splits), the points programme (jobs.report.points:
balances, points by month, redemption rate against its target; only with a loyalty
ledger), the steps of this run, the segment exports, and a link to the Great
Expectations Data Docs written by the quality step (a link relative to the page).

Only small aggregates (a few hundred rows at most) reach the driver.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import uuid
from pathlib import Path
from urllib.parse import quote

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs import storage
from jobs.collect import collect_all
from jobs.context import RunContext
from jobs.report import points as points_report
from jobs.report.kpi_targets import figures as kpi_target_figures
from jobs.report.kpi_targets import history_frame, history_query
from jobs.sources import SOURCE_NAMES
from jobs.sources import SOURCES as SOURCES_BY_NAME

SOURCES = SOURCE_NAMES
ASSETS = "_assets"  # <exports>/_assets: files shared by every day's report
STAGE_ORDER = ["prospect", "new", "active", "growing", "mature", "at_risk", "dormant", "churned"]
KPI_SERIES = (
    "active_30d_share",
    "repurchase_rate",
    "cross_channel_share",
    "identity_merge_rate",
    "pos_member_share",
    "quarantine_rate",
)


# ---- pure aggregates (DataFrame in, small DataFrame out) ------------------------------


def rf_matrix(rfm: DataFrame) -> DataFrame:
    """Members per (r_score, f_score); input gold/member_rfm for one as_of_date."""
    return rfm.groupBy("r_score", "f_score").agg(F.count(F.lit(1)).alias("members"))


def count_by(df: DataFrame, *cols: str) -> DataFrame:
    """Rows per value of ``cols`` (stage, tier, ...), key ``cols``."""
    return df.groupBy(*cols).agg(F.count(F.lit(1)).alias("members"))


def kpi_trend(kpi: DataFrame, as_of: dt.date, runs: int = 30) -> DataFrame:
    """The last ``runs`` rows of gold/kpi_daily up to ``as_of``, one per as_of_date."""
    return (
        kpi.where(F.col("as_of_date") <= F.lit(as_of))
        .orderBy(F.col("as_of_date").desc())
        .limit(runs)
    )


def quarantine_by_rule(quarantine: DataFrame, source: str, as_of: dt.date) -> DataFrame:
    """Quarantined rows of business date D per rule (one row can break several rules)."""
    return (
        quarantine.where(F.col("_business_date") == F.lit(as_of))
        .select(F.explode_outer("_reasons").alias("rule"))
        .groupBy(F.coalesce("rule", F.lit("(none)")).alias("rule"))
        .agg(F.count(F.lit(1)).alias("rows"))
        .withColumn("source", F.lit(source))
    )


def received_by_source(manifest: DataFrame, as_of: dt.date) -> DataFrame:
    """Rows received and quarantined per source for business date D (meta/ingest_manifest)."""
    return (
        manifest.where(F.col("business_date") == F.lit(as_of))
        .groupBy("source")
        .agg(
            F.sum("rows_total").alias("received"),
            F.sum("rows_bad").alias("quarantined"),
        )
    )


LINKS_CAP = 5  # members with this many linked identities or more share one bar


def identity_links(xref: DataFrame) -> DataFrame:
    """Members by number of linked source identities (capped at LINKS_CAP); input
    silver/member_xref (one source identity a row)."""
    per_member = (
        xref.where(F.col("member_id").isNotNull())
        .groupBy("member_id")
        .agg(F.count(F.lit(1)).alias("n"))
    )
    return per_member.groupBy(F.least(F.col("n"), F.lit(LINKS_CAP)).alias("identities")).agg(
        F.count(F.lit(1)).alias("members")
    )


def id_changes(changes: DataFrame, as_of: dt.date, days: int = 30) -> DataFrame:
    """Merges and splits per date over the last ``days`` days (silver/member_id_changes)."""
    start = as_of - dt.timedelta(days=days - 1)
    return (
        changes.where(F.col("as_of_date").between(F.lit(start), F.lit(as_of)))
        .groupBy("as_of_date", "change_type")
        .agg(F.count(F.lit(1)).alias("changes"))
    )


# ---- figures --------------------------------------------------------------------------


def _empty(title: str, why: str = "no data for this date"):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=why, showarrow=False, font={"size": 14})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False}, height=300)
    return fig


def fig_rf_heatmap(rows: list[dict]):
    import plotly.graph_objects as go

    title = "Members by recency score (R) x frequency score (F)"
    if not rows:
        return _empty(title)
    z = [[0] * 5 for _ in range(5)]
    for r in rows:
        if r["r_score"] and r["f_score"]:
            z[int(r["r_score"]) - 1][int(r["f_score"]) - 1] = int(r["members"])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[1, 2, 3, 4, 5],
            y=[1, 2, 3, 4, 5],
            colorscale="Blues",
            text=z,
            texttemplate="%{text}",
            hovertemplate="R=%{y} F=%{x}: %{z}<extra></extra>",
        )
    )
    scores = {"tickmode": "array", "tickvals": [1, 2, 3, 4, 5], "range": [0.5, 5.5]}
    fig.update_layout(
        title=title,
        xaxis={**scores, "title": "F score"},
        yaxis={**scores, "title": "R score"},
        height=420,
    )
    return fig


def fig_bar(rows: list[dict], key: str, title: str, order: list[str] | None = None):
    import plotly.graph_objects as go

    if not rows:
        return _empty(title)
    counts = {str(r[key]): int(r["members"]) for r in rows}
    keys = [k for k in (order or []) if k in counts] + sorted(
        k for k in counts if k not in (order or [])
    )
    fig = go.Figure(go.Bar(x=keys, y=[counts[k] for k in keys], text=[counts[k] for k in keys]))
    fig.update_layout(title=title, yaxis_title="members", height=360)
    return fig


def fig_tier_mix(rows: list[dict]):
    import plotly.graph_objects as go

    title = "Tier mix (buyers)"
    if not rows:
        return _empty(title)
    fig = go.Figure(
        go.Pie(
            labels=[str(r["tier"]) for r in rows],
            values=[int(r["members"]) for r in rows],
            hole=0.4,
        )
    )
    fig.update_layout(title=title, height=360)
    return fig


def fig_transitions(rows: list[dict]):
    import plotly.graph_objects as go

    title = "Lifecycle transitions since the previous run"
    if not rows:
        return _empty(title, "no member changed stage")
    label = lambda s: s if s else "(none)"  # noqa: E731 - null = new or merged-away member
    froms = sorted({label(r["from_stage"]) for r in rows})
    tos = sorted({label(r["to_stage"]) for r in rows})
    nodes = [f"{s} (before)" for s in froms] + [f"{s} (now)" for s in tos]
    fig = go.Figure(
        go.Sankey(
            node={"label": nodes, "pad": 12},
            link={
                "source": [froms.index(label(r["from_stage"])) for r in rows],
                "target": [len(froms) + tos.index(label(r["to_stage"])) for r in rows],
                "value": [int(r["members"]) for r in rows],
            },
        )
    )
    fig.update_layout(title=title, height=420)
    return fig


def _day_axis(days: list[str]) -> dict:
    """A date axis; a single day gets a day either side and daily ticks (plotly would
    otherwise zoom to milliseconds around one point)."""
    axis: dict = {"type": "date", "automargin": True}
    if len(set(days)) == 1:
        day = dt.date.fromisoformat(days[0])
        one = dt.timedelta(days=1)
        axis.update(range=[str(day - one), str(day + one)], dtick=86_400_000, tickformat="%Y-%m-%d")
    return axis


def fig_kpis(rows: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "KPI trend (last 30 runs)"
    if not rows:
        return _empty(title)
    rows = sorted(rows, key=lambda r: r["as_of_date"])
    x = [str(r["as_of_date"]) for r in rows]
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for name in KPI_SERIES:
        if name in rows[0]:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[r.get(name) for r in rows],
                    name=name,
                    mode="lines+markers",
                    marker={"size": 8},
                ),
                secondary_y=False,
            )
    if "members_total" in rows[0]:
        fig.add_trace(
            go.Bar(x=x, y=[r["members_total"] for r in rows], name="members_total", opacity=0.25),
            secondary_y=True,
        )
    fig.update_layout(
        title=title, height=440, legend={"orientation": "h", "y": -0.15}, xaxis=_day_axis(x)
    )
    fig.update_yaxes(title_text="share", tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title_text="members", secondary_y=True)
    return fig


def fig_quarantine(rule_rows: list[dict], received: list[dict]):
    import plotly.graph_objects as go

    title = "Quarantine rate by source and rule"
    if not rule_rows:
        return _empty(title, "nothing quarantined")
    denominators = {r["source"]: int(r["received"] or 0) for r in received}
    fig = go.Figure()
    for rule in sorted({r["rule"] for r in rule_rows}):
        xs, ys, texts = [], [], []
        for r in rule_rows:
            if r["rule"] == rule:
                total = denominators.get(r["source"]) or 0
                xs.append(r["source"])
                ys.append(r["rows"] / total if total else None)
                texts.append(f"{r['rows']} / {total}")
        fig.add_trace(go.Bar(x=xs, y=ys, name=rule, hovertext=texts))
    fig.update_layout(
        title=title,
        barmode="stack",
        yaxis={"tickformat": ".2%"},
        height=400,
        yaxis_title="rows quarantined / received on D",
    )
    return fig


def fig_identity(links: list[dict], rows: list[dict]):
    """Identity resolution: members by number of linked source identities, and the
    member ids merged or split per day over the last 30 days (often none)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Identity resolution"
    if not links and not rows:
        return _empty(title, "no member ids merged or split")
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.45, 0.55],
        subplot_titles=("members by linked source identities", "merges and splits, 30 days"),
    )
    by_n = {int(r["identities"]): int(r["members"]) for r in links}
    xs = sorted(by_n)
    fig.add_trace(
        go.Bar(
            x=[f"{n}+" if n == LINKS_CAP else str(n) for n in xs],
            y=[by_n[n] for n in xs],
            name="members",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    for kind in sorted({r["change_type"] for r in rows}):
        pts = sorted(
            (str(r["as_of_date"]), int(r["changes"])) for r in rows if r["change_type"] == kind
        )
        fig.add_trace(go.Bar(x=[p[0] for p in pts], y=[p[1] for p in pts], name=kind), row=1, col=2)
    if rows:
        fig.update_xaxes(_day_axis([str(r["as_of_date"]) for r in rows]), row=1, col=2)
    else:
        fig.add_annotation(
            text="none in the last 30 days",
            showarrow=False,
            xref="x2 domain",
            yref="y2 domain",
            x=0.5,
            y=0.5,
        )
        fig.update_xaxes(visible=False, row=1, col=2)
        fig.update_yaxes(visible=False, row=1, col=2)
    fig.update_xaxes(type="category", row=1, col=1)
    fig.update_layout(title=title, barmode="group", height=360, legend={"orientation": "h"})
    return fig


# ---- page -----------------------------------------------------------------------------


def find_data_docs(work: Path) -> Path | None:
    """The Great Expectations Data Docs index the quality step wrote under ``<work>/gx``."""
    hits = sorted(Path(work).glob("gx/**/data_docs/local_site/index.html"))
    return hits[0] if hits else None


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plotly_asset(exports: Path) -> Path:
    """``<exports>/_assets/plotly-<version>.min.js``: written once per plotly.js version.

    Every day's report links to this one copy instead of inlining the library.
    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    target = Path(exports) / ASSETS / f"plotly-{get_plotlyjs_version()}.min.js"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(get_plotlyjs(), encoding="utf-8")
        os.replace(tmp, target)
    return target


def relative_href(target: Path, page_dir: Path) -> str:
    """URL of ``target`` relative to a page in ``page_dir`` (works wherever both move)."""
    rel = os.path.relpath(Path(target).resolve(), Path(page_dir).resolve())
    return quote(Path(rel).as_posix())


PAGE_CSS = """
html { overflow-y: scroll; }
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .sub { color: #666; margin-bottom: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr));
        gap: 16px; }
.chart { border: 1px solid #eee; border-radius: 6px; padding: 4px; min-width: 0;
         overflow: hidden; }
.chart > div { width: 100%; }
table { border-collapse: collapse; margin: 8px 0 16px; }
td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 13px; }
.tables { overflow-x: auto; }
"""

# Plotly's `responsive` follows window resizes only; a panel can also change width when
# the grid reflows (fonts, scroll bar), so every chart follows its own panel too.
FOLLOW_PANELS_JS = """
if (window.ResizeObserver && window.Plotly) {
  const follow = new ResizeObserver((entries) => {
    for (const e of entries) {
      const plot = e.target.querySelector(".js-plotly-plot");
      if (plot) Plotly.Plots.resize(plot);
    }
  });
  document.querySelectorAll(".chart").forEach((panel) => follow.observe(panel));
}
"""


def chart_html(fig) -> str:
    """One chart panel: a plotly div that fills the panel's width and follows resizes."""
    height = fig.layout.height or 400
    fig.update_layout(autosize=True, width=None, margin={"l": 56, "r": 24, "t": 56, "b": 48})
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        default_width="100%",
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="chart">{div}</div>'


def render_page(
    as_of: dt.date,
    run_id: str,
    figures: list,
    sections_html: str,
    data_docs_href: str | None,
    plotly_href: str,
) -> str:
    """The whole page; plotly.js comes from ``plotly_href`` (relative to the page)."""
    charts = "".join(chart_html(fig) for fig in figures)
    docs = (
        f'<a href="{html.escape(data_docs_href)}">Great Expectations Data Docs</a>'
        if data_docs_href
        else "Great Expectations Data Docs: not found (the quality step did not write them)"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CDP run report {as_of}</title>
<script src="{html.escape(plotly_href)}"></script>
<style>{PAGE_CSS}</style></head><body>
<h1>CDP nightly run &mdash; business date {as_of}</h1>
<div class="sub">run_id {html.escape(run_id)} &middot; generated
{dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")} &middot; {docs}</div>
<div class="grid">{charts}</div>
<div class="tables">{sections_html}</div>
<script>{FOLLOW_PANELS_JS}</script>
</body></html>
"""


def add_to_manifest(out_dir: Path, page: Path, asset: Path) -> bool:
    """List ``page`` in ``out_dir/manifest.json`` (replacing an earlier entry for it).

    The exports step writes the manifest; the report comes after it and adds itself,
    with the shared plotly.js it needs (relative path). Rewritten atomically; False
    when there is no manifest (the exports step did not publish).
    """
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        return False
    doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    data = page.read_bytes()
    entry = {
        "path": page.name,
        "segment": None,
        "kind": "report",
        "format": "html",
        "rows": None,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "requires": [relative_href(asset, out_dir)],
    }
    files = [f for f in doc.get("files", []) if f.get("path") != page.name]
    doc["files"] = [*files, entry]
    tmp = out_dir / f".manifest.json.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, manifest_path)
    return True


def _queries(ctx: RunContext) -> dict[str, DataFrame]:
    """Every small aggregate the page draws, by name (collected in one query, jobs.collect)."""
    lake, as_of = ctx.lake, ctx.as_of

    def on_date(name: str) -> DataFrame:
        return lake.read(name).where(F.col("as_of_date") == F.lit(as_of))

    rfm, kpi = on_date("gold/member_rfm"), lake.read("gold/kpi_daily")
    parts = {
        f"quarantine_{source}": quarantine_by_rule(lake.read(f"quarantine/{source}"), source, as_of)
        for source in SOURCES
    }
    parts.update(
        received=received_by_source(lake.read("meta/ingest_manifest"), as_of),
        rf=rf_matrix(rfm),
        stages=count_by(on_date("gold/member_lifecycle"), "stage"),
        transitions=count_by(on_date("gold/lifecycle_transitions"), "from_stage", "to_stage"),
        tiers=count_by(rfm, "tier"),
        kpi_trend=kpi_trend(kpi, as_of),
        kpi_history=history_query(kpi, as_of),
        links=identity_links(lake.read("silver/member_xref")),
        id_changes=id_changes(lake.read("silver/member_id_changes"), as_of),
        steps=lake.read("meta/runs")
        .where(F.col("run_id") == F.lit(ctx.run_id))
        .select("step", "status", "seconds", "rows_in", "rows_out", "started_at"),
    )
    parts.update(points_report.queries(lake, as_of))
    return parts


def _figures(ctx: RunContext, rows: dict[str, list[dict]]) -> list:
    """Every chart of the page, from the small aggregates of :func:`_queries`."""
    as_of = ctx.as_of
    history = history_frame(rows["kpi_history"])
    quarantine_rows = [r for source in SOURCES for r in rows[f"quarantine_{source}"]]
    return [
        fig_rf_heatmap(rows["rf"]),
        fig_bar(rows["stages"], "stage", "Lifecycle stages", STAGE_ORDER),
        fig_transitions(rows["transitions"]),
        fig_tier_mix(rows["tiers"]),
        fig_kpis(rows["kpi_trend"]),
        fig_quarantine(quarantine_rows, rows["received"]),
        fig_identity(rows["links"], rows["id_changes"]),
        *kpi_target_figures(history, as_of),
        # none without a loyalty ledger
        *points_report.figures(rows, history if ctx.lake.exists("gold/kpi_daily") else None),
    ]


def _sections(rows: dict[str, list[dict]], out_dir: Path) -> str:
    """The tables under the charts: steps of this run, rows received, segment exports."""
    sections = []
    received = rows["received"]
    steps = sorted(rows["steps"], key=lambda s: s["started_at"])
    if steps:
        rows = [
            [s["step"], s["status"], f"{s['seconds']:.1f}", s["rows_in"], s["rows_out"]]
            for s in steps
        ]
        sections.append(
            "<h2>Steps of this run</h2>"
            + _table(["step", "status", "seconds", "rows in", "rows out"], rows)
        )
    if received:
        rows = [
            [_source_label(r["source"]), r["received"], r["quarantined"]]
            for r in sorted(received, key=lambda r: r["source"])
        ]
        sections.append(
            "<h2>Rows received and quarantined (business date)</h2>"
            + _table(["source", "received", "quarantined"], rows)
        )
    points = points_report.summary(rows)
    if points:
        sections.append("<h2>Points programme</h2>" + _table(["figure", "value"], points))
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        rows = [
            [s["name"], s["channel"], s["rows"], s.get("entered"), s.get("exited"), s["where"]]
            for s in manifest.get("segments", [])
        ]
        sections.append(
            "<h2>Segment exports</h2>"
            + _table(["segment", "channel", "members", "entered", "exited", "definition"], rows)
        )
    return "\n".join(sections)


def _source_label(name: str) -> str:
    """A source as the report names it (jobs.sources label), e.g. ``POS (pos)``."""
    src = SOURCES_BY_NAME.get(name)
    return f"{src.label} ({name})" if src else name


def run(ctx: RunContext) -> dict:
    """Build ``<exports>/<D>/report.html`` from the lake as of D (written atomically),
    the shared plotly.js beside the dates, and the page's entry in the day's manifest."""
    as_of = ctx.as_of
    rows = collect_all(_queries(ctx))  # one Spark query for the whole page
    figures = _figures(ctx, rows)
    # A local folder as it is; an object store through a local copy of the date's folder
    # and the shared assets, uploaded when the block ends (jobs.storage.local_copy).
    with storage.local_copy(ctx.settings.paths.exports, [as_of.isoformat(), ASSETS]) as exports:
        return _write_report(ctx, as_of, figures, rows, exports)


def _write_report(
    ctx: RunContext, as_of: dt.date, figures: list, rows: dict[str, list[dict]], exports: Path
) -> dict:
    out_dir = exports / as_of.isoformat()
    sections = _sections(rows, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    asset = plotly_asset(exports)
    data_docs = find_data_docs(ctx.settings.paths.work)
    page = render_page(
        as_of,
        ctx.run_id,
        figures,
        sections,
        relative_href(data_docs, out_dir) if data_docs else None,
        relative_href(asset, out_dir),
    )
    target = out_dir / "report.html"
    tmp = out_dir / f".report.html.{ctx.run_id}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    listed = add_to_manifest(out_dir, target, asset)
    where = storage.join(ctx.settings.paths.exports, as_of.isoformat(), "report.html")
    return {
        "rows_out": len(figures),
        "path": where,
        "bytes": target.stat().st_size,
        "in_manifest": listed,
    }
