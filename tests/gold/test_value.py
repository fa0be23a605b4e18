"""gold/member_value against an independent computation from the fitted parameters.

The member summary is recomputed here in plain Python from the orders written to
silver, and every prediction from the parameters gold/value_model holds, with the
published closed forms written out again (numpy/scipy, nothing from jobs.gold): the
BG/NBD P(alive) (FHL 2005 eq. 12) and conditional expectation (eq. 10, the
hypergeometric term as published), the Gamma-Gamma conditional mean, the monthly
discounted CLV, the bands of conf/value.yaml.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F
from scipy import special

from jobs import lake_state, storage
from jobs.config import CONF_DIR
from jobs.gold import value
from tests.gold.conftest import D, order

WEEK = 7.0


def synthetic_orders(n_members: int, seed: int) -> list[dict]:
    """Buyers with a purchase rate and a dropout day each; plus rows the summary must skip."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(n_members):
        mid = f"M{m:04d}"
        first = -int(rng.integers(5, 700))
        rate = rng.gamma(0.8, 1 / 20)  # purchases per day
        stop = first + int(rng.exponential(300))
        days = [first] + [d for d in range(first + 1, min(stop, 0) + 1) if rng.random() < rate]
        for k, d in enumerate(days):
            rows.append(order(f"{mid}-{k}", mid, d, float(rng.integers(5, 400))))
        if len(days) > 2:  # a second order on a purchase day: one purchase of the summed value
            rows.append(order(f"{mid}-same", mid, days[1], 7.5, channel="web"))
    rows += [
        order("ret", "M0000", -1, 999.0, txn="RETURN"),  # a return is not a purchase
        order("anon", None, -3, 50.0),  # anonymous: no member
        order("later", "M0001", 1, 80.0),  # after D: not seen
    ]
    return rows


def independent_summary(orders: list[dict]) -> dict[str, dict]:
    """member_id -> x, t_x and T in days, mean repeat value: purchases counted by day."""
    by_day: dict[str, dict[str, float]] = {}
    for o in orders:
        if o["member_id"] is None or not o["is_purchase"] or o["order_date"] > D.isoformat():
            continue
        days = by_day.setdefault(o["member_id"], {})
        days[o["order_date"]] = days.get(o["order_date"], 0.0) + float(o["net_amount"])
    out = {}
    for mid, days in by_day.items():
        dates = sorted(days)
        first, last = dt.date.fromisoformat(dates[0]), dt.date.fromisoformat(dates[-1])
        x = len(dates) - 1
        out[mid] = {
            "x": x,
            "t_x": (last - first).days,
            "T": (D - first).days,
            "zbar": sum(days[d] for d in dates[1:]) / x if x else None,
        }
    return out


def bg_p_alive(r, alpha, a, b, x, t_x, big_t):
    if x == 0:
        return 1.0
    return 1.0 / (1.0 + a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x))


def bg_expected(r, alpha, a, b, t, x, t_x, big_t):
    """FHL (2005) eq. 10 as published."""
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + big_t + t))
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp
    tail = 1 + (x > 0) * a / (b + x - 1) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return head * body / tail


def gg_mean(p, q, gamma, x, zbar):
    if not x or zbar is None or zbar <= 0:
        return p * gamma / (q - 1)
    return (p * gamma + p * x * zbar) / (p * x + q - 1)


def _models(ctx) -> dict[str, dict]:
    df = ctx.lake.read("gold/value_model").where(F.col("as_of_date") == F.lit(D))
    return {r["model"]: r.asDict() for r in df.collect()}


def _values(ctx) -> dict[str, dict]:
    df = ctx.lake.read("gold/member_value").where(F.col("as_of_date") == F.lit(D))
    return {r["member_id"]: r.asDict() for r in df.collect()}


def test_member_value_matches_an_independent_computation(make_ctx, write_table):
    ctx = make_ctx(D)
    orders = synthetic_orders(150, seed=7)
    write_table(ctx, "silver/orders", orders)
    figures = value.run(ctx)
    conf = yaml.safe_load((CONF_DIR / "value.yaml").read_text())
    expected = independent_summary(orders)
    models, got = _models(ctx), _values(ctx)

    assert set(got) == set(expected) and figures["rows_out"] == len(expected)
    assert models["bg_nbd"]["n_members"] == len(expected)
    repeaters = [m for m, s in expected.items() if s["x"] > 0 and s["zbar"] > 0]
    assert models["gamma_gamma"]["n_members"] == len(repeaters)
    assert all(m["converged"] and m["time_unit"] == "week" for m in models.values())
    bg, gg = models["bg_nbd"]["params"], models["gamma_gamma"]["params"]
    r, alpha, a, b = bg["r"], bg["alpha"], bg["a"], bg["b"]
    rate = conf["yearly_discount_rate"]
    steps = conf["clv_steps"]
    year = 365 / WEEK
    for mid, s in sorted(expected.items()):
        row = got[mid]
        x, t_x, big_t = s["x"], s["t_x"] / WEEK, s["T"] / WEEK
        assert (row["repeat_purchase_days"], row["repeat_span_days"], row["tenure_days"]) == (
            s["x"],
            s["t_x"],
            s["T"],
        ), mid
        if s["zbar"] is None:
            assert row["repeat_value_mean"] is None, mid
        else:
            assert row["repeat_value_mean"] == pytest.approx(s["zbar"], rel=1e-9), mid
        assert row["p_alive"] == pytest.approx(bg_p_alive(r, alpha, a, b, x, t_x, big_t), 1e-9)
        for days in (90, 365):
            want = bg_expected(r, alpha, a, b, days / WEEK, x, t_x, big_t)
            assert row[f"expected_purchases_{days}d"] == pytest.approx(want, rel=1e-7), mid
        order_value = gg_mean(gg["p"], gg["q"], gg["gamma"], x, s["zbar"])
        assert row["expected_order_value"] == pytest.approx(order_value, rel=1e-9), mid
        cumulative = [
            bg_expected(r, alpha, a, b, year * k / steps, x, t_x, big_t) for k in range(steps + 1)
        ]
        clv = order_value * sum(
            (cumulative[k] - cumulative[k - 1]) / (1 + rate) ** (k / steps)
            for k in range(1, steps + 1)
        )
        assert row["clv_365d"] == pytest.approx(clv, rel=1e-7), mid
        assert row["churn_risk"] == _churn_band(row["p_alive"], conf["churn_risk"]), mid
    clvs = sorted(v["clv_365d"] for v in got.values())
    for row in got.values():
        above = sum(c > row["clv_365d"] for c in clvs) / len(clvs)
        assert row["clv_band"] == _rank_band(above, conf["clv_bands"]), row["member_id"]


def _churn_band(p: float, spec: dict) -> str:
    return next((b["name"] for b in spec["bands"] if p < b["p_alive_below"]), spec["default"])


def _rank_band(share_above: float, spec: dict) -> str:
    return next((b["name"] for b in spec["bands"] if share_above < b["top_share"]), spec["default"])


def test_too_few_members_writes_no_fit_and_null_predictions(make_ctx, write_table):
    ctx = make_ctx(D)
    write_table(ctx, "silver/orders", [order("a1", "A", -30, 10.0), order("a2", "A", -2, 20.0)])
    figures = value.run(ctx)
    models, got = _models(ctx), _values(ctx)
    assert set(models) == {"bg_nbd", "gamma_gamma"}
    for m in models.values():
        assert m["params"] is None and m["converged"] is False
        assert "fewer than" in m["note"]
    assert figures["rows_out"] == 1
    # The scored rows reached the engine through a scratch Parquet file, now removed.
    scratch = lake_state.scratch_dir(ctx.settings.paths.lake, "value", ctx.run_id)
    assert not storage.exists(scratch)
    row = got["A"]
    assert (row["repeat_purchase_days"], row["repeat_span_days"], row["tenure_days"]) == (1, 28, 30)
    assert row["repeat_value_mean"] == 20.0
    for col in ("p_alive", "expected_purchases_365d", "clv_365d", "churn_risk", "clv_band"):
        assert row[col] is None, col


def test_refit_of_the_same_data_is_identical_and_replaces_only_d(make_ctx, write_table):
    orders = synthetic_orders(80, seed=3)
    ctx = make_ctx(D)
    write_table(ctx, "silver/orders", orders)
    value.run(make_ctx(D - dt.timedelta(days=1)))
    value.run(ctx)
    first = (_models(ctx), _values(ctx))
    value.run(ctx)
    assert (_models(ctx), _values(ctx)) == first
    dates = {r["as_of_date"] for r in ctx.lake.read("gold/member_value").collect()}
    assert dates == {D, D - dt.timedelta(days=1)}
    assert not math.isnan(first[0]["bg_nbd"]["log_likelihood"])


@pytest.mark.parametrize("tenure_shift", [0, 1 << 21])
def test_scoring_once_per_distinct_history_equals_scoring_every_buyer(tenure_shift):
    """score() evaluates BG/NBD once per distinct (x, t_x, T) and spreads the result:
    every buyer gets what the model gives for its own history, with repeated histories,
    and with day counts too large for the packed key (the 2-D fallback)."""
    import pandas as pd

    from jobs.gold import value_model

    rng = np.random.default_rng(3)
    n = 400
    repeat = rng.integers(0, 4, n)
    span = np.where(repeat > 0, rng.integers(0, 60, n), 0)
    tenure = span + rng.integers(0, 30, n) + tenure_shift
    summary = pd.DataFrame(
        {
            "member_id": [f"M{i:04d}" for i in range(n)],
            "repeat_purchase_days": repeat,
            "repeat_span_days": span,
            "tenure_days": tenure,
            "repeat_value_mean": np.where(repeat > 0, rng.uniform(10, 200, n), np.nan),
        }
    )
    conf = value.load_value()
    params = {"r": 1.2, "alpha": 3.0, "a": 0.05, "b": 0.9}
    models = {
        "bg_nbd": {"params": params},
        "gamma_gamma": {"params": {"p": 0.45, "q": 2.6, "gamma": 2000.0}},
    }
    got = value.score(summary, models, conf)
    x = repeat.astype(float)
    t_x, big_t = span / conf.unit_days, tenure / conf.unit_days
    assert len(np.unique(np.column_stack([x, t_x, big_t]), axis=0)) < n  # histories repeat
    np.testing.assert_array_equal(got["p_alive"], value_model.p_alive(params, x, t_x, big_t))
    want_90 = value_model.expected_purchases(params, 90 / conf.unit_days, x, t_x, big_t)
    np.testing.assert_allclose(got["expected_purchases_90d"], want_90, rtol=1e-12)
