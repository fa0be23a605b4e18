"""The run report over small hand-written Delta tables."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

from plotly.offline import get_plotlyjs_version

from jobs.report import html as report
from jobs.schemas import table_schema

D = dt.date(2026, 3, 9)


def _write(ctx, name: str, rows: list[dict]) -> None:
    cols = table_schema(name).columns
    df = ctx.spark.createDataFrame(
        [{c: r.get(c) for c in cols} for r in rows], table_schema(name).struct
    )
    ctx.lake.overwrite(df, name)


def _figure_data(page: str) -> list[list[dict]]:
    # Each chart is Plotly.newPlot("id", [traces], layout, config).
    return [
        json.loads(m) for m in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page)
    ]


def write_day(ctx) -> Path:
    """Small gold, quarantine and meta tables for D; returns the Data Docs index made."""
    rfm = [
        {"member_id": "A", "as_of_date": D, "r_score": 5, "f_score": 5, "tier": "gold"},
        {"member_id": "B", "as_of_date": D, "r_score": 5, "f_score": 5, "tier": "silver"},
        {"member_id": "C", "as_of_date": D, "r_score": 1, "f_score": 2, "tier": "bronze"},
        # another date must not count
        {"member_id": "A", "as_of_date": D - dt.timedelta(days=1), "r_score": 1, "f_score": 1},
    ]
    _write(ctx, "gold/member_rfm", rfm)
    _write(
        ctx,
        "gold/member_lifecycle",
        [
            {"member_id": m, "as_of_date": D, "stage": s}
            for m, s in (("A", "mature"), ("B", "mature"), ("C", "at_risk"))
        ],
    )
    _write(
        ctx,
        "gold/lifecycle_transitions",
        [{"member_id": "C", "as_of_date": D, "from_stage": "growing", "to_stage": "at_risk"}],
    )
    _write(
        ctx,
        "gold/kpi_daily",
        [
            {
                "as_of_date": D - dt.timedelta(days=i),
                "members_total": 100 + i,
                "repurchase_rate": 0.5,
            }
            for i in range(35)
        ],
    )
    _write(
        ctx,
        "quarantine/pos",
        [
            {
                "_source_file": "f",
                "_line_no": 1,
                "_reasons": ["amount_mismatch"],
                "_business_date": D,
            },
            {
                "_source_file": "f",
                "_line_no": 2,
                "_reasons": ["amount_mismatch", "bad_ts"],
                "_business_date": D,
            },
        ],
    )
    _write(
        ctx,
        "meta/ingest_manifest",
        [
            {
                "source": "pos",
                "business_date": D,
                "_source_file": "f",
                "rows_total": 40,
                "rows_bad": 2,
            }
        ],
    )
    _write(
        ctx,
        "silver/member_id_changes",
        [{"old_member_id": "X", "new_member_id": "A", "change_type": "merge", "as_of_date": D}],
    )
    _write(
        ctx,
        "silver/member_xref",
        [
            {"source": "crm", "source_key": "c1", "member_id": "A"},
            {"source": "pos_card", "source_key": "k1", "member_id": "A"},
            {"source": "crm", "source_key": "c2", "member_id": "B"},
        ],
    )
    docs = ctx.settings.paths.work / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html></html>")

    return docs / "index.html"


def test_report_page_with_its_charts(make_ctx):
    ctx = make_ctx(D, run_id="run123")
    index = write_day(ctx)
    out = report.run(ctx)
    page = (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert out["path"].endswith("2026-03-09/report.html")
    # plotly.js is not inlined: one shared copy beside the dates, linked relatively, no CDN.
    assert "* plotly.js v" not in page
    srcs = re.findall(r'<script[^>]+src="([^"]+)"', page)
    assert srcs == [f"../_assets/plotly-{get_plotlyjs_version()}.min.js"]
    asset = (ctx.settings.paths.exports / D.isoformat() / srcs[0]).resolve()
    assert asset.read_text(encoding="utf-8").count("* plotly.js v") == 1
    assert len(page.encode()) < 200_000, len(page.encode())
    for title in (
        "Members by recency score (R) x frequency score (F)",
        "Lifecycle stages",
        "Lifecycle transitions",
        "Tier mix",
        "KPI trend (last 30 runs)",
        "Quarantine rate by source and rule",
        "Identity resolution",
        "merges and splits, 30 days",
    ):
        assert title in page, title
    data = _figure_data(page)
    heat = data[0][0]
    assert heat["type"] == "heatmap"
    assert heat["z"][4][4] == 2 and heat["z"][0][1] == 1 and sum(map(sum, heat["z"])) == 3
    stages = data[1][0]
    assert stages["x"] == ["mature", "at_risk"] and stages["y"] == [2, 1]
    kpi_x = data[4][0]["x"]
    assert len(kpi_x) == 30 and kpi_x[-1] == "2026-03-09"
    links, merges = data[6]
    assert (links["x"], links["y"]) == (["1", "2"], [1, 1])  # B has 1 identity, A has 2
    assert (merges["name"], merges["y"]) == ("merge", [1])
    quarantine = {t["name"]: t["y"] for t in data[5]}
    assert quarantine == {"amount_mismatch": [2 / 40], "bad_ts": [1 / 40]}
    # Data Docs: a relative link (an absolute file:/// one breaks when shared)
    assert "file://" not in page
    href = re.search(r'<a href="([^"]+)">Great Expectations Data Docs', page).group(1)
    assert (ctx.settings.paths.exports / D.isoformat() / href).resolve() == index.resolve()
    assert not list((ctx.settings.paths.exports / D.isoformat()).glob(".*tmp"))


def test_report_on_an_empty_lake_still_renders(make_ctx):
    ctx = make_ctx(D)
    report.run(ctx)
    page = (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert "../_assets/plotly-" in page
    assert "no data for this date" in page
    assert "Data Docs: not found" in page


def test_reports_share_one_plotly_and_are_listed_in_the_manifest(make_ctx):
    exports = None
    for day in (D - dt.timedelta(days=1), D):
        ctx = make_ctx(day, run_id=f"run-{day}")
        exports = ctx.settings.paths.exports
        folder = exports / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(
            json.dumps({"as_of_date": day.isoformat(), "segments": [], "files": []}),
            encoding="utf-8",
        )
        report.run(ctx)
        report.run(ctx)  # a rerun replaces the page and its manifest entry
    assets = list((exports / "_assets").iterdir())
    assert [a.name for a in assets] == [f"plotly-{get_plotlyjs_version()}.min.js"]
    for day in (D - dt.timedelta(days=1), D):
        folder = exports / day.isoformat()
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        entries = [f for f in manifest["files"] if f["path"] == "report.html"]
        assert len(entries) == 1
        data = (folder / "report.html").read_bytes()
        assert entries[0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert entries[0]["bytes"] == len(data) and entries[0]["kind"] == "report"
        assert entries[0]["requires"] == [f"../_assets/{assets[0].name}"]
        assert (folder / entries[0]["requires"][0]).resolve() == assets[0].resolve()
    # a year of pages is small: the library is not in them
    assert len(data) < 200_000 < assets[0].stat().st_size


def test_kpi_trend_with_one_run_shows_the_point():
    fig = report.fig_kpis([{"as_of_date": D, "members_total": 10, "repurchase_rate": 0.25}])
    # a day either side with daily ticks, not an axis zoomed to milliseconds
    assert tuple(fig.layout.xaxis.range) == ("2026-03-08", "2026-03-10")
    assert fig.layout.xaxis.dtick == 86_400_000
    line = next(t for t in fig.data if t.name == "repurchase_rate")
    assert list(line.x) == ["2026-03-09"] and list(line.y) == [0.25]
    assert "markers" in line.mode


def test_heatmap_axes_show_every_score():
    fig = report.fig_rf_heatmap([{"r_score": 5, "f_score": 1, "members": 3}])
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert list(axis.tickvals) == [1, 2, 3, 4, 5]
        assert tuple(axis.range) == (0.5, 5.5)
