"""Run the pure transforms on a local JVM SparkSession (plain Apache Spark, no Delta).

Executed by tests/jvm/test_jvm.py in the JVM worker (tests/jvm/worker.py), because a
process holds either Spark Connect or classic PySpark sessions, not both. Each check builds a
small DataFrame, runs a transform the nightly jobs use, and asserts the result;
this proves the job code is plain Spark, not Sail-only.
"""

from __future__ import annotations

import sys

from pyspark.sql import functions as F

from jobs.ingest.bronze_types import type_crm, type_pos, type_web
from jobs.ingest.job import check_rows, web_copies
from jobs.ingest.parse import STAGED_SCHEMA, staged_row


def _staged(spark, source: str, rows: list[dict]):
    """Staged rows as the parser writes them, from column values plus _line_no/_source_file/..."""
    from pyspark.sql import types as T

    struct = T.StructType(
        [
            T.StructField(f.name, T.LongType() if f.name == "_line_no" else T.StringType())
            for f in STAGED_SCHEMA
        ]
    )
    staged = [
        staged_row(
            source, r, r["_line_no"], r["_source_file"], r["_business_date"], r.get("_parse_error")
        )
        for r in rows
    ]
    return spark.createDataFrame([tuple(r[f.name] for f in STAGED_SCHEMA) for r in staged], struct)


def check_ingest(spark) -> None:
    pos = _staged(
        spark,
        "pos",
        [
            dict(
                order_id="O1",
                line_no="1",
                store_id="S1",
                order_ts="2026-11-01 10:00:00",
                txn_type="SALE",
                sku="K",
                category="生鲜",
                qty="2",
                unit_price="10.00",
                discount=None,
                amount="20.00",
                payment_method="cash",
                _line_no=2,
                _source_file="f",
                _business_date="2026-11-01",
            ),
            dict(
                order_id="O2",
                line_no="0",
                store_id="S1",
                order_ts="2026-13-01 10:00:00",
                txn_type="SALE",
                sku="K",
                category="生鲜",
                qty="2",
                unit_price="10.00",
                amount="19.00",
                _line_no=3,
                _source_file="f",
                _business_date="2026-11-01",
            ),
        ],
    )
    checked = check_rows(pos, "pos")
    reasons = {r._line_no: sorted(r._reasons) for r in checked.collect()}
    assert reasons == {2: [], 3: ["amount_mismatch", "line_no_invalid", "order_ts_invalid"]}, (
        reasons
    )
    typed = type_pos(checked.filter(F.size("_reasons") == 0)).first()
    assert str(typed.discount) == "0.00" and str(typed.order_date) == "2026-11-01", typed

    web = _staged(
        spark,
        "web",
        [
            dict(
                event_id="E1",
                event_ts="2026-11-01T23:30:00+08:00",
                anonymous_id="A",
                event_type="purchase",
                channel="app",
                order_id="W1",
                revenue="9.5",
                _line_no=1,
                _source_file="a",
                _business_date="2026-11-01",
            ),
            dict(
                event_id="E1",
                event_ts="2026-11-01T23:30:00+08:00",
                anonymous_id="A",
                event_type="purchase",
                channel="app",
                order_id="W1",
                revenue="9.5",
                _line_no=2,
                _source_file="a",
                _business_date="2026-11-01",
            ),
            dict(
                _parse_error="invalid_json",
                _line_no=3,
                _source_file="a",
                _business_date="2026-11-01",
            ),
        ],
    )
    checked = check_rows(web, "web")
    assert sorted(sorted(r._reasons) for r in checked.collect()) == [[], [], ["invalid_json"]]
    typed = type_web(checked.filter(F.size("_reasons") == 0))
    empty = spark.createDataFrame([], "event_id string, _source_file string")
    marked, _ = web_copies(typed, empty)
    firsts, dups = marked.filter(~F.col("_is_dup")), marked.filter("_is_dup")
    assert [r._line_no for r in firsts.collect()] == [1] and [
        r._line_no for r in dups.collect()
    ] == [2]
    assert str(firsts.first().event_date) == "2026-11-01"

    crm = _staged(
        spark,
        "crm",
        [
            dict(
                crm_id="M1",
                gender="女",
                birth_date="19900307",
                register_ts="2024-01-01 10:00:00",
                updated_ts="2024-01-01 10:00:00",
                opt_in_sms="Y",
                _line_no=2,
                _source_file="c",
                _business_date="2026-11-01",
            ),
        ],
    )
    row = type_crm(check_rows(crm, "crm")).first()
    assert (
        row.gender == "F"
        and str(row.birth_date) == "1990-03-07"
        and row.opt_in_sms is True
        and row.opt_in_email is False
    )


def check_symmetric_difference(spark) -> None:
    """jobs.identity.setops against Spark's EXCEPT both ways (nulls equal, duplicates once)."""
    from jobs.identity.setops import symmetric_difference

    schema = "src long, dst long, rule string"
    a = spark.createDataFrame([(1, 2, "p"), (1, 2, "p"), (3, 4, None), (5, 6, "c")], schema)
    b = spark.createDataFrame([(3, 4, None), (5, 6, "e"), (8, 9, "c")], schema)
    got = sorted(map(tuple, symmetric_difference(a, b).collect()), key=repr)
    reference = sorted(map(tuple, a.subtract(b).unionByName(b.subtract(a)).collect()), key=repr)
    assert got == reference and len(got) == 4, got


def check_compare_in_slices(spark) -> None:
    """The fuzzy comparisons written in slices to one Parquet folder (append) equal one
    query's (tests/identity/conftest.py)."""
    import tempfile

    from tests.identity.conftest import check_compare_in_slices as check

    with tempfile.TemporaryDirectory() as base:
        check(spark, base)


CHECKS = [check_ingest, check_symmetric_difference, check_compare_in_slices]


def main() -> int:
    """Run every check on the process's JVM session (the worker's, or a new local one)."""
    from jobs import engine
    from jobs.config import load_settings

    spark = engine.get_spark(load_settings(env={"CDP_ENGINE": "spark"}).engine)
    failures = 0
    for check in CHECKS:
        try:
            check(spark)
            print(f"ok {check.__name__}")
        except Exception as exc:  # noqa: BLE001 - report every check, then fail
            failures += 1
            print(f"FAILED {check.__name__}: {type(exc).__name__}: {exc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
