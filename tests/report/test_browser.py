"""The run report in a real browser: headless Chromium at 1000, 1400 and 1920 px.

Chromium (Debian's ``chromium``; `.ci/run` installs it) loads a copy of report.html with
tests/report/measure.js added; the script writes every chart panel's geometry into the
page and ``--dump-dom`` brings it out. Checked at each width: no chart is wider than
its panel, panels do not overlap, the page does not scroll sideways, the R x F heatmap
shows F = 1..5 and its colour bar inside the panel.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

from jobs.report import html as report
from tests.report.test_html import D, write_day

WIDTHS = (1000, 1400, 1920)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
TOLERANCE = 1.0  # px: sub-pixel rounding of borders


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(
            "no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs "
            "it when it can): the report's browser layout test cannot run"
        )
    return found


def render(browser: str, page: Path, width: int, profile: Path) -> dict:
    """Load ``page`` at ``width`` px and return what measure.js wrote."""
    cmd = [
        browser,
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={width},1200",
        "--virtual-time-budget=20000",
        "--dump-dom",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="cdp-measure">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no measurement (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(unescape(found.group(1)))


def overlap(a: dict, b: dict) -> float:
    w = min(a["right"], b["right"]) - max(a["left"], b["left"])
    h = min(a["bottom"], b["bottom"]) - max(a["top"], b["top"])
    return max(w, 0) * max(h, 0)


def check_layout(m: dict, width: int) -> list[str]:
    problems = []
    if not m["plotly"]:
        problems.append("plotly.js did not load")
    if m["scrollWidth"] > m["viewport"] + TOLERANCE:
        problems.append(f"page scrolls sideways: {m['scrollWidth']} > {m['viewport']}")
    panels = m["panels"]
    for i, p in enumerate(panels):
        box = p["panel"]
        for svg in p["svgs"]:
            if svg["left"] < box["left"] - TOLERANCE or svg["right"] > box["right"] + TOLERANCE:
                problems.append(f"{width}px: chart {i} ({p['title']}) {svg} outside panel {box}")
        for j in range(i):
            if overlap(box, panels[j]["panel"]) > TOLERANCE:
                problems.append(f"{width}px: panels {j} and {i} overlap")
    heat = panels[0]
    if heat["xticks"] != ["1", "2", "3", "4", "5"]:
        problems.append(f"{width}px: heatmap F ticks {heat['xticks']}")
    if not heat["colorbars"] or any(
        c["right"] > heat["panel"]["right"] + TOLERANCE or c["width"] <= 0
        for c in heat["colorbars"]
    ):
        problems.append(f"{width}px: heatmap colour bar not inside its panel: {heat['colorbars']}")
    return problems


@pytest.mark.slow
def test_charts_fit_their_panels_at_every_width(make_ctx, tmp_path):
    browser = chromium()
    ctx = make_ctx(D, run_id="run123")
    write_day(ctx)
    out = Path(report.run(ctx)["path"])
    page = out.with_name("report.measure.html")
    script = (Path(__file__).with_name("measure.js")).read_text(encoding="utf-8")
    text = out.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", f"<script>{script}</script></body>"), "utf-8")
    charts = text.count('<div class="chart">')
    assert charts >= 7, f"the report draws {charts} charts"
    problems = []
    for width in WIDTHS:
        m = render(browser, page, width, tmp_path / f"profile-{width}")
        assert len(m["panels"]) == charts, m
        problems += check_layout(m, width)
    assert not problems, "\n".join(problems)
