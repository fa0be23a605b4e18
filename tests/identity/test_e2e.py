"""End to end on the generator's landing zone: ingest -> quality -> identity -> orders,
then scored against the generator's truth."""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.config import with_paths
from jobs.identity.evaluate import evaluate
from jobs.identity.job import run as run_identity
from jobs.pipeline import run_pipeline, select_steps

END = dt.date(2026, 11, 7)


@pytest.fixture()
def generated(settings, tmp_path):
    from jobs.generate.landing import generate_landing

    landing = tmp_path / "gen"
    generate_landing(landing, members=300, days=7, seed=11, end_date=END, workers=1)
    return with_paths(settings, landing=landing)


def test_generated_300_members(generated, make_ctx):
    ctx = make_ctx(END, settings=generated)
    res = run_pipeline(ctx, select_steps(until="orders"))
    figures = res["identity"]
    assert figures["cc_rounds"] >= 1 and figures["blocked_values"] >= 1
    ev = evaluate(generated, generated.paths.landing / "truth", ctx.spark)
    assert ev["precision"] >= 0.999
    assert ev["recall"] >= 0.98
    assert ev["junk_values_in_a_member"] == 0  # the cashiers' placeholder phone
    assert ev["mixed_clusters"] == 0
    # POS orders on the placeholder phone alone stay anonymous.
    orders = ctx.lake.read("silver/orders")
    assert orders.filter("member_id is not null").count() > 0
    # A second run of the same date changes no member id.
    before = {
        (r["source"], r["source_key"]): r["member_id"]
        for r in ctx.lake.read("silver/member_xref").collect()
    }
    again = run_identity(make_ctx(END, settings=generated))
    assert again["merges"] == again["splits"] == again["dissolved"] == 0
    after = {
        (r["source"], r["source_key"]): r["member_id"]
        for r in ctx.lake.read("silver/member_xref").collect()
    }
    assert after == before
