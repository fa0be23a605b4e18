"""gold/member_rfm: scores with ties, frequency-0 members, segments and tiers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jobs.config import ConfigError, load_model
from jobs.gold.conf import RfmConf
from tests.gold.conftest import D, member, order, rows_by_member


def _orders() -> list[dict]:
    return [
        order("a1", "M1", -10, 100.0),
        order("b1", "M2", -10, 100.0),  # M1 and M2 tie on every measure
        order("c1", "M3", -50, 500.0),
        order("c2", "M3", -20, 500.0),
        *[order(f"d{i}", "M4", -4 - i, 1000.0) for i in range(1, 4)],  # last at D-5
        *[order(f"e{i}", "M5", -i, 2000.0) for i in range(1, 6)],  # last at D-1
        order("z1", "Z", -400, 50.0),  # bought, but not in the last 365 days
    ]


def test_scores_ties_segments(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    members = [member(m) for m in ("M1", "M2", "M3", "M4", "M5", "Z", "PROSPECT")]
    silver(ctx, orders=_orders(), members=members)
    figures = run_gold(ctx, "features", "rfm")
    r = rows_by_member(ctx, "gold/member_rfm")
    assert set(r) == {"M1", "M2", "M3", "M4", "M5", "Z"}
    # 5 scored members, score = least(5, 1 + floor(5 * (rank - 1) / 5)), SQL RANK.
    # frequency 1,1,2,3,5 -> rank 1,1,3,4,5 -> 1,1,3,4,5 (the tie takes the lowest score)
    # monetary 100,100,1000,3000,10000 -> the same; recency (descending) 20,10,10,5,1:
    # rank 1,2,2,4,5 -> 1,2,2,4,5.
    got = {m: (v["r_score"], v["f_score"], v["m_score"]) for m, v in r.items()}
    assert got == {
        "M1": (2, 1, 1),
        "M2": (2, 1, 1),
        "M3": (1, 3, 3),
        "M4": (4, 4, 4),
        "M5": (5, 5, 5),
        "Z": (1, 1, 1),  # frequency 0: 1 for all three, and not in the ranking
    }
    seg = {m: v["rfm_segment"] for m, v in r.items()}
    assert seg == {
        "M1": "Hibernating",  # R2, FM (1+1+1)//2 = 1
        "M2": "Hibernating",
        "M3": "At Risk",  # R1, FM3
        "M4": "Loyal",  # R4, FM4
        "M5": "Champions",
        "Z": "Lost",
    }
    assert r["M3"]["fm_score"] == 3 and r["M3"]["rfm_cell"] == "133"
    assert r["M5"]["frequency"] == 5 and r["M5"]["monetary"] == Decimal("10000.00")
    assert r["M5"]["recency_days"] == 1 and r["M5"]["tier"] == "gold"
    assert r["M4"]["tier"] == "silver" and r["M1"]["tier"] == "bronze"
    assert r["M5"]["frequency_7d"] == 5 and r["M5"]["monetary_7d"] == Decimal("10000.00")
    assert r["M3"]["frequency_30d"] == 1 and r["M3"]["frequency_90d"] == 2
    assert r["M3"]["aov"] == Decimal("500.00")
    assert r["M5"]["monetary_trend"] is None  # nothing in the 90 days before
    assert r["Z"]["frequency"] == 0 and r["Z"]["recency_days"] == 400
    assert r["Z"]["monetary"] == Decimal("0.00")
    assert figures["rfm"]["rows_out"] == 6


def test_fm_rounds_half_up(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    # n = 4: ranks 1..4 -> scores 1, 2, 3, 4. Frequency 1..4 ascending, monetary reversed:
    # W (1 purchase of 900) f1 m4 -> fm (1+4+1)//2 = 3 (2.5 rounds up); X f2 m3 -> 3.
    orders = [order("w1", "W", -1, 900.0)]
    orders += [order(f"x{i}", "X", -1, 300.0) for i in range(2)]
    orders += [order(f"y{i}", "Y", -1, 100.0) for i in range(3)]
    orders += [order(f"z{i}", "Z", -1, 50.0) for i in range(4)]
    silver(ctx, orders=orders, members=[member(m) for m in "WXYZ"])
    run_gold(ctx, "features", "rfm")
    r = rows_by_member(ctx, "gold/member_rfm")
    got = {m: (v["f_score"], v["m_score"], v["fm_score"]) for m, v in r.items()}
    assert got == {"W": (1, 4, 3), "X": (2, 3, 3), "Y": (3, 2, 3), "Z": (4, 1, 3)}
    # equal recency: every member ties at rank 1 -> r 1 (lowest score of the range)
    assert {v["r_score"] for v in r.values()} == {1}
    assert r["W"]["rfm_segment"] == "At Risk"  # R1 x FM3


def test_ties_take_lowest_score_many_one_time_buyers(make_ctx, silver, run_gold):
    """Most members bought once: they share rank 1 and F = 1 (not all at F = 3)."""
    ctx = make_ctx(D)
    once = [f"O{i}" for i in range(7)]
    orders = [order(f"o{i}", m, -(i + 1), 100.0 + i) for i, m in enumerate(once)]
    orders += [order(f"t{i}", "T", -(i + 1), 100.0) for i in range(2)]
    orders += [order(f"u{i}", "U", -(i + 1), 100.0) for i in range(3)]
    orders += [order(f"v{i}", "V", -(i + 1), 100.0) for i in range(5)]
    silver(ctx, orders=orders, members=[member(m) for m in [*once, "T", "U", "V"]])
    run_gold(ctx, "features", "rfm")
    r = rows_by_member(ctx, "gold/member_rfm")
    # n = 10, frequency 1 x7, 2, 3, 5 -> ranks 1 x7, 8, 9, 10 -> 1 x7, 4, 5, 5
    assert {r[m]["f_score"] for m in once} == {1}
    assert (r["T"]["f_score"], r["U"]["f_score"], r["V"]["f_score"]) == (4, 5, 5)


@pytest.mark.parametrize(
    ("amount", "tier"),
    [(10000.0, "gold"), (9999.99, "silver"), (2000.0, "silver"), (1999.99, "bronze")],
)
def test_tier_boundaries(make_ctx, silver, run_gold, amount, tier):
    ctx = make_ctx(D)
    # a return inside 365 days counts against monetary: 365-day net is `amount`
    orders = [order("s1", "T", -364, amount + 50), order("r1", "T", -3, 50.0, txn="RETURN")]
    silver(ctx, orders=orders, members=[member("T")])
    run_gold(ctx, "features", "rfm")
    assert rows_by_member(ctx, "gold/member_rfm")["T"]["tier"] == tier


def test_segment_grid_must_be_complete(tmp_path):
    (tmp_path / "rfm.yaml").write_text(
        "segments:\n  5: [New, Loyal, Loyal, Champions]\n"
        "  4: [a, b, c, d, e]\n  3: [a, b, c, d, e]\n  2: [a, b, c, d, e]\n"
        "  1: [a, b, c, d, e]\ntiers: []\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"rfm.yaml: segments"):
        load_model("rfm.yaml", RfmConf, tmp_path)


def _window_scores(rows: list[tuple], index: int, descending: bool) -> dict[str, int]:
    """The contract's scores computed the way SQL's RANK() OVER (ORDER BY v) does, nulls
    first ascending and last descending; frequency-0 members score 1."""
    ranked = [r for r in rows if r[2] >= 1]
    n = len(ranked)

    def key(value):  # the sort key of RANK's order, nulls placed as SQL places them
        if value is None:
            return (0,) if not descending else (1,)
        return (1, value) if not descending else (0, -value)

    out = {}
    for r in rows:
        if r[2] < 1:
            out[r[0]] = 1
            continue
        before = sum(1 for o in ranked if key(o[index]) < key(r[index]))
        out[r[0]] = min(5, 1 + (5 * before) // n)
    return out


def test_scores_from_distinct_values_equal_sql_rank_scores(spark):
    """with_scores ranks distinct values (a running sum of their counts) instead of
    sorting every member: the same scores as RANK over the members, ties, nulls and
    frequency-0 members included."""
    from jobs.gold.rfm import with_scores

    rows = [
        ("A", 3, 1, 10.0), ("B", 3, 1, 10.0), ("C", 40, 2, None), ("D", 1, 5, 99.5),
        ("E", 200, 1, 0.0), ("F", 3, 3, 10.0), ("G", 7, 0, 0.0), ("H", 40, 2, 50.0),
        ("I", 9, 9, None), ("J", 1, 1, 99.5), ("K", 500, 0, None),
    ]  # fmt: skip
    df = spark.createDataFrame(
        rows, "member_id string, recency_days int, frequency long, monetary double"
    )
    got = {r["member_id"]: r for r in with_scores(df).collect()}
    assert set(got) == {r[0] for r in rows}
    for index, descending, name in (
        (1, True, "r_score"),
        (2, False, "f_score"),
        (3, False, "m_score"),
    ):
        want = _window_scores(rows, index, descending)
        assert {m: got[m][name] for m in got} == want, name
