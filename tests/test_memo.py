"""jobs.memo: a rerun skips the gold and export steps whose inputs did not change, and
runs every step whose input, output, files or code changed (real Delta tables)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs import lineage, memo
from jobs.config import with_paths
from jobs.pipeline import STEPS, run_pipeline, select_steps
from tests.gold.conftest import D, member, order, silver, write_table  # noqa: F401 - fixtures

END = dt.date(2026, 11, 5)
MEMO_STEPS = [s.name for s in STEPS if s.memo]


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    from jobs.generate.landing import generate_landing

    landing = tmp_path_factory.mktemp("zone") / "landing"
    generate_landing(landing, members=300, days=4, seed=11, end_date=END, workers=1)
    return landing


def _versions(lake) -> dict[str, int]:
    """Versions of every silver and gold table and the points ledger's state (the quality
    step rewrites D's meta/points_reconciliation rows on any run)."""
    names = [t for t in lake.tables() if t.split("/")[0] in ("silver", "gold", "restricted")]
    return {t: lake.version(t) for t in [*names, "meta/points_ledger_state"]}


def _exported(day: Path) -> dict:
    """The export's manifest less what the report step (not memoised) adds to it."""
    manifest = json.loads((day / "manifest.json").read_text())
    manifest["files"] = [f for f in manifest["files"] if not f["path"].startswith("report")]
    return manifest


def _rows_of_run(lake, run_id: str) -> dict[str, dict]:
    rows = lake.read("meta/runs").filter(F.col("run_id") == run_id).collect()
    return {r["step"]: json.loads(r["detail"]) for r in rows}


def test_a_rerun_skips_what_did_not_change(zone, settings, make_ctx):
    s = with_paths(settings, landing=zone)
    first = make_ctx(END, settings=s)
    run_pipeline(first)
    lake = first.lake
    ran = _rows_of_run(lake, first.run_id)
    assert all(ran[n]["memo"] == "ran: first run for this date" for n in MEMO_STEPS)
    features = ran["features"]["lineage"]
    reads = {Path(p).relative_to(lake.root).as_posix() for p in features["reads"]}
    assert reads >= {"silver/orders", "silver/members", "silver/web_events", "silver/member_xref"}
    assert "silver/order_lines" not in reads  # the orders' line_totals hold what it needs
    assert list(features["writes"]) == [lake.path("gold/member_features")]
    export_day = Path(s.paths.exports) / END.isoformat()
    assert str(export_day / "manifest.json") in ran["exports"]["lineage"]["files"]
    before, manifest = _versions(lake), _exported(export_day)

    # The same night again: nothing changed, every memo step is skipped.
    again = make_ctx(END, settings=s)
    run_pipeline(again)
    skipped = _rows_of_run(lake, again.run_id)
    for name in MEMO_STEPS:
        assert skipped[name].get("skipped") == "inputs unchanged", (name, skipped[name]["memo"])
        assert skipped[name]["computed_by"] == first.run_id
        assert skipped[name]["rows_out"] == ran[name]["rows_out"]
    assert _versions(lake) == before
    assert _exported(export_day) == manifest

    # An export file deleted: exports runs again and writes it back; gold stays skipped.
    listed = manifest["files"][0]
    (export_day / listed["path"]).unlink()
    third = make_ctx(END, settings=s)
    run_pipeline(third, select_steps(until="exports"))
    rerun = _rows_of_run(lake, third.run_id)
    assert "changed or is gone" in rerun["exports"]["memo"]
    assert lineage.file_digest(str(export_day / listed["path"])) == listed["sha256"]
    assert rerun["kpis"]["computed_by"] == first.run_id

    # --recompute runs every step.
    forced = make_ctx(END, settings=s, recompute=True)
    run_pipeline(forced, select_steps(["features", "rfm"]))
    assert all("skipped" not in d for d in _rows_of_run(lake, forced.run_id).values())


def test_a_changed_input_output_or_code_runs_the_step(make_ctx, silver, monkeypatch):  # noqa: F811
    from jobs.pipeline import STEP_BY_NAME, run_step

    ctx = make_ctx(D)
    members = [member("A"), member("B")]
    silver(ctx, orders=[order("o1", "A", -3, 40.0)], members=members)

    def step(name: str) -> dict:
        return run_step(make_ctx(D), STEP_BY_NAME[name])

    def monetary(member_id: str) -> float:
        rows = ctx.lake.read("gold/member_rfm").filter(F.col("member_id") == member_id)
        return float(rows.collect()[0]["monetary"])

    assert "memo" in step("features") and "memo" in step("rfm")
    assert step("features")["skipped"] and step("rfm")["skipped"]
    # A new order: silver moved, features runs; its output moved, rfm runs.
    silver(ctx, orders=[order("o1", "A", -3, 40.0), order("o2", "B", -1, 10.0)], members=members)
    ran = step("features")
    assert ran["memo"].startswith("ran: ") and "/lake/silver/" in ran["memo"]
    assert "gold/member_features at version" in step("rfm")["memo"]
    assert monetary("B") == 10.0
    # Someone rewrote D's RFM rows: rfm runs and puts them back.
    ctx.lake.replace_where(
        ctx.lake.read("gold/member_rfm").filter(F.lit(False)), "gold/member_rfm",
        f"as_of_date = '{D}'",
    )  # fmt: skip
    assert "gold/member_rfm at version" in step("rfm")["memo"]
    assert monetary("A") == 40.0
    # A deploy (another code digest) or CDP_RECOMPUTE runs it as well.
    assert step("rfm")["skipped"]
    monkeypatch.setenv(memo.RECOMPUTE_ENV, "1")
    assert step("rfm")["memo"] == "ran: recompute asked for"
    monkeypatch.delenv(memo.RECOMPUTE_ENV)
    assert step("rfm")["skipped"]  # the recomputed run's lineage holds
    monkeypatch.setattr(lineage, "_CODE_DIGEST", "another deploy")
    assert step("rfm")["memo"] == "ran: code, configuration or settings changed"
