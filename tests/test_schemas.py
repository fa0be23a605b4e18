"""The small type language of schemas/ (jobs.schemas.parse_type)."""

from __future__ import annotations

import pytest
from pyspark.sql import types as T

from jobs.schemas import parse_type, table_schema


def test_a_decimal_inside_a_struct_keeps_its_scale():
    """The comma of decimal(p,s) is not a field separator: a struct field after it parses."""
    got = parse_type("array<struct<a:string,n:decimal(18,2),d:date>>")
    assert got == T.ArrayType(
        T.StructType(
            [
                T.StructField("a", T.StringType()),
                T.StructField("n", T.DecimalType(18, 2)),
                T.StructField("d", T.DateType()),
            ]
        )
    )
    assert parse_type("map<string, decimal(10,3)>") == T.MapType(
        T.StringType(), T.DecimalType(10, 3)
    )


def test_an_unknown_type_is_refused():
    with pytest.raises(ValueError, match="unknown type"):
        parse_type("struct<a:string,n:decimal(18)>")


def test_order_lines_carry_no_member_and_orders_their_line_totals():
    assert "member_id" not in table_schema("silver/order_lines").columns
    totals = table_schema("silver/orders").struct["line_totals"].dataType
    assert [f.name for f in totals.elementType.fields] == [
        "category", "order_date", "is_purchase", "net_amount",
    ]  # fmt: skip
