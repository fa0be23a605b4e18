"""The seed KPIs of gold/kpi_daily: a generated zone against the pandas reference, conf checks."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.config import ConfigError, with_paths
from jobs.gold.kpis import SEED_KPIS, KpisConf, load_kpis
from jobs.pipeline import run_pipeline, select_steps
from tests.gold.kpi_reference import reference_seed_kpis

END = dt.date(2026, 11, 7)


def test_seed_kpis_match_the_pandas_reference(tmp_path, settings, make_ctx):
    from jobs.generate.landing import generate_landing

    landing = tmp_path / "landing"
    generate_landing(landing, members=400, days=75, seed=15, end_date=END, workers=1)
    s = with_paths(settings, landing=landing)
    ctx = make_ctx(END, settings=s)
    run_pipeline(ctx, select_steps(until="kpis"))
    row = ctx.lake.read("gold/kpi_daily").where(F.col("as_of_date") == F.lit(END)).first()
    got = row.asDict()
    want = reference_seed_kpis(s.paths.lake, END)
    for name, expected in want.items():
        if expected is None:
            assert got[name] is None, name
        else:
            assert got[name] == pytest.approx(expected, rel=1e-9), name
    # Every seed KPI is on the row; the zone exercises the windows (no empty denominators).
    assert set(SEED_KPIS) <= set(got)
    assert got["retention_base_7d"] > 0 and got["registered_cohort_30d"] > 0
    assert got["members_total_30d_ago"] > 0 and got["clv_365d_avg"] is not None
    # The generated zone has a loyalty ledger: the redemption rate is a real share.
    assert got["points_earned_365d"] > 0 and 0 < got["points_redemption_rate"] < 1


def test_kpis_conf_needs_a_target_for_every_seed_kpi(tmp_path):
    conf = load_kpis()
    assert set(conf.targets) == set(SEED_KPIS)
    assert conf.targets["mau_share"].resolve(None) == 0.60
    assert conf.targets["clv_365d_avg"].resolve(100.0) == pytest.approx(140.0)
    assert conf.targets["clv_365d_avg"].resolve(None) is None
    assert conf.windows.retention_days == 7
    (tmp_path / "kpis.yaml").write_text(
        "targets:\n  mau_share: {target: 0.6}\n  no_such_kpi: {target: 1}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="unknown KPI.*no_such_kpi.*missing"):
        load_kpis(tmp_path)
    with pytest.raises(ValueError, match="either target or target_change"):
        KpisConf.model_validate(
            {"targets": {k: {"target": 1, "target_change": 0.1} for k in SEED_KPIS}}
        )
    (tmp_path / "kpis.yaml").write_text("windows: {active_days: 0}\ntargets: {}\n")
    with pytest.raises(ConfigError, match="active_days"):
        load_kpis(tmp_path)
