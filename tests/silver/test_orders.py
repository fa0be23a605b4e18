"""silver/orders, silver/order_lines and silver/web_events on hand-written bronze + xref."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from jobs.privacy.pii import hmac_py
from jobs.silver.orders import WEB_KEYS, attach_member, run
from tests.identity.conftest import day, pos_row, rows, web_row
from tests.silver.conftest import write_xref


def test_orders_lines_and_events(spark, make_ctx, write_bronze):
    ctx = make_ctx(day(3))
    key = ctx.pii_key
    pos = [
        pos_row("o1", 0, 1, member_card_no=" k1", qty=2, unit_price=Decimal("10.00"),
                discount=Decimal("5.00"), amount=Decimal("15.00"), category="美妆"),
        pos_row("o1", 0, 2, member_card_no="K1", qty=1, unit_price=Decimal("30.00"),
                discount=None, amount=Decimal("30.00"), category="生鲜"),
        # The same line re-sent in a later file: counted once.
        pos_row("o1", 1, 2, member_card_no="K1", qty=1, unit_price=Decimal("30.00"),
                discount=None, amount=Decimal("30.00"), category="生鲜",
                order_date=day(0), order_ts=dt.datetime(2026, 11, 1, 10, 0)),
        pos_row("o2", 2, 1, txn_type="RETURN", ref_order_id="o1", phone="+86 137 0000 0001",
                amount=Decimal("10.00")),
        pos_row("o3", 2, 1, phone="13800000000"),  # blocked placeholder: no member
        pos_row("o4", 2, 1, member_card_no="K9", phone="13700000001"),  # unknown card
        pos_row("o5", 2, 1),  # anonymous
        pos_row("late", 9, 1, member_card_no="K1"),  # after D: not yet
    ]  # fmt: skip
    web = [
        web_row("e1", "a1", 1, event_type="purchase", user_id="u1", order_id="w1",
                revenue=Decimal("99.50"), channel="miniprogram", category="数码", sku="X1"),
        web_row("e1b", "a1", 2, event_type="purchase", user_id="u1", order_id="w1",
                revenue=Decimal("99.50"), channel="miniprogram"),
        web_row("e2", "a9", 2, event_type="purchase", order_id="w2", revenue=Decimal("5.00"),
                channel="web"),
        web_row("e3", "a7", 2, event_type="page_view"),
    ]  # fmt: skip
    write_bronze(ctx, [], pos, web)
    write_xref(
        spark,
        ctx,
        [
            ("pos_card", "K1", "M1"),
            ("pos_phone", hmac_py("13700000001", key), "M1"),
            ("pos_phone", hmac_py("13800000000", key), None),
            ("web_user", "u1", "M1"),
            ("web_anon", "a1", "M1"),
            ("web_anon", "a9", "M3"),
            ("web_anon", "a7", None),
        ],
    )
    figures = run(ctx)
    orders = {r["order_id"]: r for r in rows(ctx, "silver/orders")}
    assert set(orders) == {"o1", "o2", "o3", "o4", "o5", "w1", "w2"}
    o1 = orders["o1"]
    assert (o1["gross_amount"], o1["discount_amount"], o1["net_amount"]) == (
        Decimal("50.00"), Decimal("5.00"), Decimal("45.00"),
    )  # fmt: skip
    assert (o1["n_lines"], o1["n_items"], o1["categories"]) == (2, 3, ["生鲜", "美妆"])
    assert (o1["member_id"], o1["channel"], o1["is_purchase"], o1["order_month"]) == (
        "M1", "store", True, "2026-11",
    )  # fmt: skip
    o2 = orders["o2"]
    assert (o2["txn_type"], o2["is_purchase"], o2["ref_order_id"], o2["member_id"]) == (
        "RETURN", False, "o1", "M1",
    )  # fmt: skip
    assert orders["o3"]["member_id"] is None
    assert orders["o4"]["member_id"] == "M1"  # unknown card, known phone
    assert orders["o5"]["member_id"] is None
    w1 = orders["w1"]
    assert (w1["channel"], w1["is_online"], w1["net_amount"], w1["member_id"]) == (
        "miniprogram", True, Decimal("99.50"), "M1",
    )  # fmt: skip
    assert w1["order_date"] == day(1) and w1["categories"] == ["数码"]
    assert orders["w2"]["member_id"] == "M3"  # by its device

    lines = rows(ctx, "silver/order_lines")
    assert len([r for r in lines if r["order_id"] == "o1"]) == 2
    assert [r["net_amount"] for r in lines if r["order_id"] == "w1"] == [Decimal("99.50")]
    stored = ctx.lake.read("silver/web_events")
    assert "member_id" not in stored.columns  # looked up when read, never re-keyed
    resolved = attach_member(stored, ctx.lake.read("silver/member_xref"), WEB_KEYS)
    events = {r["event_id"]: r["member_id"] for r in resolved.collect()}
    assert events == {"e1": "M1", "e1b": "M1", "e2": "M3", "e3": None}
    assert (figures["mode"], figures["rows_out"]) == ("full", 7)
    assert sum(o["member_id"] is not None for o in orders.values()) == 5


def test_unique_pos_lines_windows_only_when_a_key_repeats(spark):
    from jobs.silver.orders import dedupe_pos_lines, unique_pos_lines

    schema = (
        "order_id string, line_no int, _ingested_at timestamp, _source_file string, _line_no long"
    )
    at = dt.datetime(2026, 11, 2, 1, 0)
    unique = spark.createDataFrame(
        [("o1", 1, at, "f1", 1), ("o1", 2, at, "f1", 2), ("o2", 1, at, "f2", 1)], schema
    )
    assert unique_pos_lines(unique) is unique  # no repeat: no window, the rows as they are
    repeated = unique.unionByName(
        spark.createDataFrame([("o1", 2, at + dt.timedelta(hours=1), "f3", 7)], schema)
    )
    got = sorted(tuple(r) for r in unique_pos_lines(repeated).collect())
    assert got == sorted(tuple(r) for r in dedupe_pos_lines(repeated).collect())
    assert len(got) == 3 and ("o1", 2, at + dt.timedelta(hours=1), "f3", 7) in got


def test_line_totals_sum_each_category_date_and_purchase_flag(spark):
    """pos_orders' ``line_totals`` against a Python reference: lines of one order summed
    by (category, line date, purchase flag), null-safe (a line without a category is
    its own entry), a null amount counting 0, sorted; the total equals the lines' sum."""
    from jobs.silver.orders import pos_orders

    d0, d1 = dt.date(2026, 11, 1), dt.date(2026, 11, 2)
    lines = [  # order_id, category, order_date, txn_type, amount
        ("o1", "美妆", d0, "SALE", "10.00"),
        ("o1", "美妆", d0, "SALE", "2.50"),  # same key: summed
        ("o1", None, d0, "SALE", "4.00"),
        ("o1", None, d0, "SALE", None),  # counts 0
        ("o1", "美妆", d1, "SALE", "1.00"),  # a line of the next day (the order straddles)
        ("o1", "美妆", d0, "RETURN", "3.00"),  # a line of another type in the same order
        ("o2", "生鲜", d1, "RETURN", "7.00"),
    ]
    schema = (
        "order_id string, category string, order_date date, txn_type string, "
        "amount decimal(14,2), qty int, unit_price decimal(14,2), discount decimal(14,2), "
        "ref_order_id string, member_id string, store_id string, order_ts timestamp, "
        "payment_method string, card_key string, phone_key string"
    )
    data = [
        (o, c, d, t, None if a is None else Decimal(a), 1, Decimal(0), None, None, None, None,
         dt.datetime(2026, 11, 1, 9), None, None, None)
        for o, c, d, t, a in lines
    ]  # fmt: skip
    got = {
        r["order_id"]: r["line_totals"]
        for r in pos_orders(spark.createDataFrame(data, schema)).collect()
    }
    want: dict[str, dict] = {}
    for o, c, d, t, a in lines:
        key = (c, d, t == "SALE")
        want.setdefault(o, {})[key] = want.get(o, {}).get(key, Decimal(0)) + Decimal(a or 0)
    for order_id, totals in want.items():
        entries = [
            (e["category"], e["order_date"], e["is_purchase"], e["net_amount"])
            for e in got[order_id]
        ]
        assert {e[:3]: e[3] for e in entries} == totals
        assert len(entries) == len(totals)  # one entry per key
        assert entries == sorted(entries, key=lambda e: (e[0] is None, e[0] or "", e[1], e[2]))
    assert got["o1"][-1]["category"] is None and got["o1"][-1]["net_amount"] == Decimal("4.00")
