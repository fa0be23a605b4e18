"""The run report over small hand-written Delta tables."""

from __future__ import annotations

import datetime as dt
import json
import re

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


def test_report_is_one_self_contained_page_with_the_charts(make_ctx):
    ctx = make_ctx(D, run_id="run123")
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
    docs = ctx.settings.paths.work / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html></html>")

    out = report.run(ctx)
    page = (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert out["path"].endswith("2026-03-09/report.html")
    # plotly.js inlined exactly once, no CDN.
    assert page.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", page)
    for title in (
        "Members by recency score (R) x frequency score (F)",
        "Lifecycle stages",
        "Lifecycle transitions",
        "Tier mix",
        "KPI trend (last 30 runs)",
        "Quarantine rate by source and rule",
        "Identity merges and splits",
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
    quarantine = {t["name"]: t["y"] for t in data[5]}
    assert quarantine == {"amount_mismatch": [2 / 40], "bad_ts": [1 / 40]}
    assert (docs / "index.html").as_uri() in page
    assert not list((ctx.settings.paths.exports / D.isoformat()).glob(".*tmp"))


def test_report_on_an_empty_lake_still_renders(make_ctx):
    ctx = make_ctx(D)
    report.run(ctx)
    page = (ctx.settings.paths.exports / D.isoformat() / "report.html").read_text(encoding="utf-8")
    assert page.count("* plotly.js v") == 1
    assert "no data for this date" in page
    assert "Data Docs: not found" in page
