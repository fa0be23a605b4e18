"""The quality step reconciles POS points with the loyalty ledger: orders whose points
differ are counted and listed in meta/points_reconciliation, never fixed."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from jobs.quality import job as quality
from jobs.schemas import table_schema

D = dt.date(2026, 6, 30)
LEDGER_DDL = "txn_id string, crm_id string, txn_type string, points int, order_id string"


def _line(order_id: str, line_no: int, earned: int | None, redeemed: int | None, back: int = 0):
    values = {
        "order_id": order_id,
        "line_no": line_no,
        "store_id": "S1",
        "txn_type": "SALE",
        "points_earned": earned,
        "points_redeemed": redeemed,
        "_business_date": D - dt.timedelta(days=back),
    }
    return tuple(values.get(c) for c in table_schema("bronze/pos_lines").columns)


def _write_pos_and_ledger(ctx) -> None:
    lines = [
        _line("O1", 1, 10, None),  # 10 + 5 earned, booked as 15: agrees
        _line("O1", 2, 5, None),
        _line("O2", 1, 20, 100),  # ledger booked 50 redeemed: differs (planted)
        _line("O3", 1, 30, None),  # no ledger row at all
        _line("O4", 1, None, None),  # anonymous sale, no points, no ledger: agrees
        _line("O5", 1, 40, None, back=7),  # D-7: outside the 7 days checked
        _line("O6", 1, 8, None),  # EARN 8 and a later ADJUST: agrees (ADJUST not compared)
    ]
    pos = ctx.spark.createDataFrame(lines, table_schema("bronze/pos_lines").struct)
    ctx.lake.overwrite(pos, "bronze/pos_lines")
    ledger = [
        ("t1", "C1", "EARN", 15, "O1"),
        ("t2", "C2", "EARN", 20, "O2"),
        ("t3", "C2", "REDEEM", 50, "O2"),
        ("t4", "C6", "EARN", 8, "O6"),
        ("t5", "C6", "ADJUST", -8, "O6"),
        ("t6", "C7", "EARN", 99, "W1"),  # an online order: not a POS order, not checked
        ("t7", "C7", "EARN", 5, None),  # a birthday bonus: no order
    ]
    df = ctx.spark.createDataFrame(ledger, LEDGER_DDL)
    ctx.lake.overwrite(df, "bronze/loyalty_ledger", conform_schema=False)


def test_orders_whose_points_differ_are_counted_and_listed(make_ctx):
    ctx = make_ctx(D)
    _write_pos_and_ledger(ctx)
    quality.run(ctx)
    figures = quality.run(ctx)  # a rerun of D replaces D's list
    assert figures["points_orders_checked"] == 5
    assert figures["points_orders_differ"] == 2
    assert figures["points_orders_by_issue"] == {"points_differ": 1, "no_ledger_entry": 1}
    rows = {
        r["order_id"]: r
        for r in ctx.lake.read("meta/points_reconciliation")
        .where(F.col("as_of_date") == F.lit(D))
        .collect()
    }
    assert set(rows) == {"O2", "O3"}
    o2 = rows["O2"]
    assert (o2["pos_points_earned"], o2["ledger_points_earned"]) == (20, 20)
    assert (o2["pos_points_redeemed"], o2["ledger_points_redeemed"], o2["issue"]) == (
        100,
        50,
        "points_differ",
    )
    assert (rows["O3"]["ledger_points_earned"], rows["O3"]["issue"]) == (0, "no_ledger_entry")
    # Nothing was fixed: the ledger still holds what was delivered.
    assert ctx.lake.read("bronze/loyalty_ledger").count() == 7


def test_without_a_ledger_nothing_is_checked(make_ctx):
    ctx = make_ctx(D)
    figures = quality.run(ctx)
    assert "not checked" in figures["points_reconciliation"]
    assert not ctx.lake.exists("meta/points_reconciliation")
