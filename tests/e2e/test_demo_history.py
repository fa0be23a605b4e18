"""The demo's shape of data at a smaller size: more than a year of history, two nights.

`make demo` generates 2,000 members x 400 days and runs three nights; here 1,000 members
x 400 days (6 stores, as the demo), a history load and two nights through the pipeline's
own steps. Every lifecycle stage of conf/lifecycle.yaml, every segment of conf/segments.yaml,
every RFM score and every chart of the run report must have data (issue 13, item 8).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.config import CONF_DIR, with_paths
from jobs.demo import CATCH_UP_DAYS, DEMO_DAYS, DEMO_STORES
from jobs.pipeline import run_pipeline, select_steps

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 29)
# As the demo: a history load a month before the nights, then two nights (the first
# catches up the month, so identities linked in it merge).
NIGHTS = [END - dt.timedelta(days=1 + CATCH_UP_DAYS), END - dt.timedelta(days=1), END]
EMPTY_CHART_TEXTS = (
    "no data for this date",
    "no member changed stage",
    "no member ids merged",
    "nothing quarantined",
)


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    from jobs.generate.landing import generate_landing

    landing = tmp_path_factory.mktemp("demo") / "landing"
    generate_landing(
        landing, members=1000, days=DEMO_DAYS, seed=42, end_date=END, stores=DEMO_STORES
    )
    return landing


def _conf(name: str) -> dict:
    return yaml.safe_load((CONF_DIR / name).read_text(encoding="utf-8"))


def test_every_stage_segment_and_chart_has_data(zone, settings, make_ctx):
    s = with_paths(settings, landing=zone)
    for night in NIGHTS:
        run_pipeline(make_ctx(night, settings=s), select_steps())
    lake = make_ctx(END, settings=s).lake

    def on_end(name: str):
        return lake.read(name).filter(F.col("as_of_date") == F.lit(END))

    lifecycle = _conf("lifecycle.yaml")
    stages = {r["stage"] for r in lifecycle["rules"]} | {lifecycle.get("default_stage", "active")}
    got = {
        r["stage"]: r["n"]
        for r in on_end("gold/member_lifecycle")
        .groupBy("stage")
        .agg(F.count(F.lit(1)).alias("n"))
        .collect()
    }
    assert stages - set(got) == set(), got
    assert on_end("gold/lifecycle_transitions").count() > 0

    rfm = on_end("gold/member_rfm")
    for score in ("r_score", "f_score", "m_score"):
        seen = {r[score] for r in rfm.select(score).distinct().collect()}
        assert seen == {1, 2, 3, 4, 5}, (score, seen)
    assert lake.read("gold/kpi_daily").count() == len(NIGHTS)
    # The points programme (issue 14): the ledger taken in, balances, the redemption rate.
    assert lake.read("bronze/loyalty_ledger").count() > 0
    assert on_end("gold/member_points").filter(F.col("balance") > 0).count() > 0
    kpi = on_end("gold/kpi_daily").first()
    assert kpi["points_redemption_rate"] is not None and 0 < kpi["points_redemption_rate"] < 1

    day = s.paths.exports / END.isoformat()
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    rows = {seg["name"]: seg["rows"] for seg in manifest["segments"]}
    shipped = {seg["name"] for seg in _conf("segments.yaml")["segments"]}
    assert set(rows) == shipped
    assert {name for name, n in rows.items() if n == 0} == set(), rows

    page = (day / "report.html").read_text(encoding="utf-8")
    assert [t for t in EMPTY_CHART_TEXTS if t in page] == []
    assert "redemption rate" in page.lower()
