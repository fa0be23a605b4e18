"""Helpers for the gold tests: hand-written silver rows written as real Delta tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.schemas import table_schema

D = dt.date(2026, 6, 30)  # the business date most tests run as of
# Every table the gold steps write (one partition per as_of_date).
GOLD_TABLES = (
    "gold/member_features",
    "gold/member_rfm",
    "gold/member_tier_changes",
    "gold/member_tags",
    "gold/member_tag_changes",
    "gold/member_lifecycle",
    "gold/lifecycle_transitions",
    "gold/kpi_daily",
    "gold/member_value",
    "gold/value_model",
)


def day(offset: int) -> str:
    """D + offset as ISO text (offset -364 is the first day of the 365-day window)."""
    return (D + dt.timedelta(days=offset)).isoformat()


def _text_schema(name: str) -> T.StructType:
    """The table's schema with dates, timestamps and decimals as strings.

    Rows are written as text and cast by the lake's conform step, so a timestamp
    like '2026-06-30 21:00:00' is read in the session time zone (store-local), as
    the silver job would have produced it.
    """
    fields = []
    for f in table_schema(name).struct.fields:
        t = f.dataType
        if isinstance(t, T.DateType | T.TimestampType | T.DecimalType):
            t = T.StringType()
        fields.append(T.StructField(f.name, t, True))
    return T.StructType(fields)


def order(
    order_id: str,
    member_id: str | None,
    offset: int,
    amount: float,
    *,
    txn: str = "SALE",
    channel: str = "store",
    time: str = "12:00:00",
    gross: float | None = None,
    discount: float = 0.0,
    category: str = "生鲜",
    store_id: str = "S1",
) -> dict:
    """One silver/orders row dated D + offset."""
    date = day(offset)
    online = channel != "store"
    return {
        "order_id": order_id,
        "source": "web" if online else "pos",
        "channel": channel,
        "is_online": online,
        "txn_type": txn,
        "is_purchase": txn == "SALE",
        "member_id": member_id,
        "store_id": None if online else store_id,
        "order_ts": f"{date} {time}",
        "order_date": date,
        "order_month": date[:7],
        "gross_amount": str(gross if gross is not None else amount + discount),
        "discount_amount": str(discount),
        "net_amount": str(amount),
        "n_lines": 1,
        "n_items": 1,
        "categories": [category],
    }


def line_of(o: dict, line_no: int = 1, category: str | None = None, amount: float | None = None):
    """A silver/order_lines row for order ``o`` (by default its one line)."""
    return {
        "order_id": o["order_id"],
        "line_no": line_no,
        "channel": o["channel"],
        "is_online": o["is_online"],
        "txn_type": o["txn_type"],
        "is_purchase": o["is_purchase"],
        "order_ts": o["order_ts"],
        "order_date": o["order_date"],
        "order_month": o["order_month"],
        "sku": "sku1",
        "category": category or o["categories"][0],
        "qty": 1,
        "gross_amount": o["gross_amount"] if amount is None else str(amount),
        "discount_amount": "0" if amount is not None else o["discount_amount"],
        "net_amount": o["net_amount"] if amount is None else str(amount),
    }


def with_line_totals(o: dict, lines: list[dict]) -> dict:
    """Order ``o`` with ``line_totals`` summed from its ``lines`` (those of its order_id
    and channel), as the orders step sums them: by (category, date, purchase flag), a
    null amount counting 0."""
    totals: dict[tuple, Decimal] = {}
    for line in lines:
        if (line["order_id"], line["channel"]) == (o["order_id"], o["channel"]):
            key = (line["category"], dt.date.fromisoformat(line["order_date"]),
                   line["is_purchase"])  # fmt: skip
            totals[key] = totals.get(key, Decimal(0)) + Decimal(line["net_amount"] or 0)
    return {**o, "line_totals": [(*key, total) for key, total in totals.items()]}


def member(member_id: str, first_seen_offset: int = -400, **kw) -> dict:
    row = {
        "member_id": member_id,
        "is_registered": True,
        "status": "active",
        "first_seen": day(first_seen_offset),
        "last_seen": day(0),
    }
    row.update(kw)
    return row


@pytest.fixture()
def write_table(spark) -> Callable:
    """write_table(ctx, 'silver/orders', rows): overwrite a silver table with ``rows``."""

    def _write(ctx, name: str, rows: list[dict]) -> None:
        schema = _text_schema(name)
        data = [tuple(r.get(f.name) for f in schema.fields) for r in rows]
        unknown = {k for r in rows for k in r} - set(schema.fieldNames())
        assert not unknown, f"{name}: unknown columns {unknown}"
        df = spark.createDataFrame(data, schema)
        ctx.lake.overwrite(df, name)

    return _write


@pytest.fixture()
def silver(write_table) -> Callable:
    """silver(ctx, orders=[...], members=[...], lines=None, events=[...]): write silver.

    ``lines`` defaults to one line per order (its category and amounts). An event's
    ``member_id`` becomes a web account key and its silver/member_xref row.
    """

    def _silver(ctx, orders=(), members=(), lines=None, events=()) -> None:
        lines = list(lines) if lines is not None else [line_of(o) for o in orders]
        write_table(ctx, "silver/orders", [with_line_totals(o, lines) for o in orders])
        write_table(ctx, "silver/order_lines", lines)
        write_table(ctx, "silver/members", list(members))
        # Events are stored with identity keys; their members come from the xref.
        stored, xref = [], {}
        for e in events:
            e = dict(e)
            m = e.pop("member_id", None)
            if m is not None:
                e["user_key"] = f"u-{m}"
                xref[e["user_key"]] = {"source": "web_user", "source_key": f"u-{m}", "member_id": m}
            stored.append(e)
        write_table(ctx, "silver/web_events", stored)
        if xref:
            write_table(ctx, "silver/member_xref", list(xref.values()))

    return _silver


@pytest.fixture()
def run_gold() -> Callable:
    """run_gold(ctx, *steps): run gold steps in pipeline order, return their figures."""

    def _run(ctx, *steps: str) -> dict:
        from jobs.gold import features, kpis, lifecycle, rfm, tags, value

        mods = {
            "features": features,
            "value": value,
            "rfm": rfm,
            "tags": tags,
            "lifecycle": lifecycle,
            "kpis": kpis,
        }
        wanted = steps or tuple(mods)
        return {s: mods[s].run(ctx) for s in mods if s in wanted}

    return _run


def rows_by_member(ctx, name: str, as_of: dt.date = D) -> dict[str, dict]:
    df = ctx.lake.read(name).filter(F.col("as_of_date") == F.lit(as_of))
    return {r["member_id"]: r.asDict() for r in df.collect()}
