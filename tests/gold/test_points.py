"""gold/member_points from silver/points_ledger, against an independent reference.

silver/points_ledger is written here directly as a small Delta table with the columns
CONTRACT 3 fixes (txn_id, member_id, txn_date, txn_type, points) and those of 1.4 the
job reads (expire_date, order_id), so these tests do not depend on the loyalty ingest.
"""

from __future__ import annotations

import datetime as dt
import os
import random

import pytest
from pyspark.sql import functions as F

from jobs.gold import points
from tests.gold.conftest import D
from tests.gold.points_reference import compare_member_points

LEDGER_DDL = (
    "txn_id string, member_id string, txn_date date, txn_type string, points int, "
    "order_id string, expire_date date"
)
# Days around the window edges: D, D-1, D-364 (first day of 365), D-365 (outside), D+1.
DAY_EDGES = [0, -1, -2, -29, -179, -180, -181, -364, -365, -366, -700, 1, 5]
# Expire dates around D and D+30: D (lapsed), D+1, D+30 (last day in), D+31 (out), none.
EXPIRE_EDGES = [-40, -1, 0, 1, 2, 15, 30, 31, 60, 200, None]


def ledger_row(
    n: int,
    member: str | None,
    offset: int,
    kind: str,
    pts: int,
    *,
    expire: int | None = None,
    order_id: str | None = None,
    base: dt.date = D,
) -> tuple:
    """A silver/points_ledger row dated base + offset, expiring base + expire (if given)."""
    return (
        f"t{n}",
        member,
        base + dt.timedelta(days=offset),
        kind,
        pts,
        order_id,
        None if expire is None else base + dt.timedelta(days=expire),
    )


def synthetic_ledger(seed: int = 5, n_members: int = 120) -> list[tuple]:
    """Random ledgers leaning on every window edge; expire dates follow earn dates
    (a later EARN never expires earlier), as in a yearly or rolling-expiry programme."""
    rng = random.Random(seed)
    rows: list[tuple] = []
    for i in range(n_members):
        mid = f"M{i:03d}"
        days = sorted(rng.choice(DAY_EDGES) for _ in range(rng.choice([1, 2, 3, 5, 8])))
        expire_shift = rng.choice(EXPIRE_EDGES[:-1])
        for day in days:
            kind = rng.choices(["EARN", "REDEEM", "EXPIRE", "ADJUST"], [6, 3, 1, 1])[0]
            pts = rng.choice([1, 50, 100, 500, 2000])
            if kind == "ADJUST":
                pts = rng.choice([-300, -20, 20, 300])
            expire = None
            if kind == "EARN" and rng.random() < 0.85:
                expire = expire_shift + (day - days[0])  # monotone in the earn date
            rows.append(ledger_row(len(rows), mid, day, kind, pts, expire=expire))
    rows.append(ledger_row(len(rows), None, -3, "EARN", 999, expire=10))  # no member found
    rows.append(ledger_row(len(rows), "LATE", 2, "EARN", 10, expire=20))  # only after D
    return rows


def write_ledger(ctx, rows: list[tuple]) -> None:
    df = ctx.spark.createDataFrame(rows, LEDGER_DDL)
    ctx.lake.overwrite(df, points.LEDGER, conform_schema=False)


def _on_d(ctx, name: str):
    return ctx.lake.read(name).where(F.col("as_of_date") == F.lit(D))


def test_member_points_match_an_independent_reference(make_ctx):
    ctx = make_ctx(D)
    write_ledger(ctx, synthetic_ledger())
    figures = points.run(ctx)
    problems = compare_member_points(ctx.lake.root, D)
    assert problems == [], "\n".join(problems[:20])
    got = {r["member_id"]: r.asDict() for r in _on_d(ctx, points.TABLE).collect()}
    assert "LATE" not in got and len(got) > 100  # the comparison was not vacuous
    # The edges were exercised: points expiring inside and a negative balance reported.
    assert any(r["expiring_30d"] > 0 for r in got.values())
    assert any(0 < r["expiring_30d"] < r["balance"] for r in got.values())
    negative = sum(r["balance"] < 0 for r in got.values())
    assert negative > 0 and figures["members_negative_balance"] == negative
    assert figures["ledger_rows_without_member"] == 1 and figures["rows_out"] == len(got)


@pytest.mark.skipif(
    not (os.environ.get("CDP_REF_LAKE") and os.environ.get("CDP_REF_DATE")),
    reason="set CDP_REF_LAKE and CDP_REF_DATE to check an existing lake",
)
def test_member_points_match_the_reference_on_an_existing_lake():
    as_of = dt.date.fromisoformat(os.environ["CDP_REF_DATE"])
    problems = compare_member_points(os.environ["CDP_REF_LAKE"], as_of)
    assert problems == [], f"{len(problems)} differences:\n" + "\n".join(problems[:20])


def test_expiring_points_are_the_ones_left_after_redemptions(make_ctx):
    """Redemptions use the earliest-expiring points first; lapsed lots are not 'expiring'."""
    ctx = make_ctx(D)
    write_ledger(
        ctx,
        [
            ledger_row(1, "A", -300, "EARN", 100, expire=-1),  # lapsed yesterday, not expired yet
            ledger_row(2, "A", -200, "EARN", 300, expire=10),
            ledger_row(3, "A", -100, "EARN", 400, expire=31),  # the day after the window
            ledger_row(4, "A", -50, "REDEEM", 250),  # takes the 100 lapsed, then 150 of 300
            ledger_row(5, "A", -10, "ADJUST", -50),  # and 50 more
            ledger_row(6, "B", -5, "EARN", 80),  # no expire date: never expires
            ledger_row(7, "B", -4, "ADJUST", 20),
        ],
    )
    points.run(ctx)
    got = {r["member_id"]: r for r in _on_d(ctx, points.TABLE).collect()}
    a, b = got["A"], got["B"]
    assert (a["balance"], a["expiring_30d"], a["redeemed_365d"]) == (500, 100, 250)
    assert a["days_since_redemption"] == 50 and a["redeemed_share_365d"] == pytest.approx(250 / 800)
    assert (b["balance"], b["expiring_30d"], b["adjusted_365d"]) == (100, 0, 20)
    assert b["last_redemption_date"] is None and b["days_since_redemption"] is None


def test_no_ledger_writes_nothing_and_says_so(make_ctx):
    ctx = make_ctx(D)
    figures = points.run(ctx)
    assert figures["rows_out"] == 0 and "no silver/points_ledger" in figures["note"]
    assert not ctx.lake.exists(points.TABLE)
