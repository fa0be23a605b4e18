"""A backfill does not rewind silver (issue 12 item 11).

Nights D1 and D2 over a generated landing zone, then `cdp run --date D1` again: every
silver table (and restricted/member_pii, the identity and orders state) is exactly what
D2 left, not a single commit added, while gold for D1 is recomputed and equals what the
nightly D1 run wrote. The next night then runs incrementally from the D2 state.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from jobs.config import with_paths
from jobs.lake import Lake
from jobs.pipeline import run_pipeline, select_steps
from jobs.silver.backfill import follows_silver, scratch_root
from tests.reliability.test_crash_safety import _text

END = dt.date(2026, 11, 20)
D1, D2 = END - dt.timedelta(days=1), END


def _rows(lake: Lake, name: str, as_of: dt.date | None = None) -> list[tuple]:
    df = lake.read(name)
    if as_of is not None:
        df = df.where(df.as_of_date == as_of)
    cols = sorted(c for c in df.columns if c not in ("run_id", "detail", "generated_at"))
    return sorted(tuple(_text(v) for v in r) for r in df.select(*cols).collect())


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    from jobs.generate.landing import generate_landing

    out = tmp_path_factory.mktemp("backfill") / "landing"
    generate_landing(out, members=80, days=4, seed=11, end_date=END, workers=1)
    return out


@pytest.mark.slow
def test_backfill_keeps_silver_current_and_reproduces_gold(zone, settings, make_ctx):
    ingest = settings.ingest.model_copy(update={"max_quarantine_rate": 1.0})
    s = with_paths(settings, landing=zone).model_copy(update={"ingest": ingest})
    steps = select_steps(until="exports")
    run_pipeline(make_ctx(D1, settings=s), steps)
    lake = make_ctx(D1, settings=s).lake
    gold = [t for t in lake.tables() if t.startswith("gold/")]
    nightly_d1 = {t: _rows(lake, t, D1) for t in gold}
    assert nightly_d1["gold/member_rfm"], "the first night wrote no RFM rows"
    run_pipeline(make_ctx(D2, settings=s), steps)
    silver = [t for t in lake.tables() if follows_silver(t)]
    assert {"silver/orders", "silver/members", "restricted/member_pii"} <= set(silver)
    at_d2 = {t: _rows(lake, t) for t in silver}
    versions = {t: lake.version(t) for t in silver}
    gold_d2 = {t: _rows(lake, t, D2) for t in gold}
    # D2 brought orders a rewind to D1 would drop.
    assert lake.read("silver/orders").where(f"order_date > '{D1}'").count() > 0

    back = make_ctx(D1, settings=s)
    results = run_pipeline(back, steps)
    assert results["orders"]["mode"] == "full" and "backfill" in results["orders"]["mode_reason"]
    assert "backfill" in results["identity"]["mode_reason"]

    # Silver, its PII table and its state: not one commit, same rows.
    assert {t: lake.version(t) for t in silver} == versions
    assert {t: _rows(lake, t) for t in silver} == at_d2
    # Gold for D1 recomputed as of D1 equals the nightly D1; D2's partitions stay.
    for t in gold:
        assert _rows(lake, t, D1) == nightly_d1[t], t
        assert _rows(lake, t, D2) == gold_d2[t], t
    assert not Path(scratch_root(back)).exists()  # the backfill's copy of silver is gone
    # The export of D1 was published again (from D1's silver).
    assert (s.paths.exports / D1.isoformat() / "_SUCCESS").exists()

    # The next night starts from the D2 state: nothing changed, nothing to redo.
    night = run_pipeline(make_ctx(D2, settings=s), select_steps(until="orders"))
    assert night["identity"]["mode"] == "noop" and night["orders"]["mode"] == "noop"


def test_backfill_lake_keeps_silver_writes_in_its_scratch_lake(spark, make_ctx, tmp_path):
    """Reads fall through until the backfill writes; writes never reach the real silver."""
    from jobs.schemas import table_schema
    from jobs.silver.backfill import BackfillLake, context_for

    def xref(key: str, member: str):
        schema = table_schema("silver/member_xref").struct
        row = {"source": "crm", "source_key": key, "member_id": member, "as_of_date": D2}
        return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields)], schema)

    ctx = make_ctx(D2)
    real = ctx.lake
    real.overwrite(xref("c1", "M1"), "silver/member_xref")
    state = spark.createDataFrame(
        [(D2, "r", "{}")], "as_of_date date, run_id string, detail string"
    )
    real.overwrite(state, "meta/identity_state", conform_schema=False)
    before = real.version("silver/member_xref")

    assert context_for(make_ctx(D2)).lake.__class__ is Lake  # a night: the real lake
    back = context_for(make_ctx(D1))
    lake = back.lake
    assert isinstance(lake, BackfillLake) and back.as_of == D1
    assert lake.path("silver/member_xref").startswith(str(tmp_path / "lake" / "_cdp" / "backfill"))
    assert [r.member_id for r in lake.read("silver/member_xref").collect()] == ["M1"]
    # A MERGE first copies today's rows, then changes the copy only.
    lake.merge(xref("c2", "M2"), "silver/member_xref", ["source", "source_key"])
    assert sorted(r.member_id for r in lake.read("silver/member_xref").collect()) == ["M1", "M2"]
    assert [r.member_id for r in real.read("silver/member_xref").collect()] == ["M1"]
    assert real.version("silver/member_xref") == before
    # Gold (and everything not silver) is the real lake's.
    kpi = spark.createDataFrame([(D1, 5)], "as_of_date date, members_total long")
    lake.overwrite(kpi, "gold/kpi_daily", conform_schema=False)
    assert real.read("gold/kpi_daily").count() == 1
    assert not (Path(scratch_root(back)) / "gold").exists()
