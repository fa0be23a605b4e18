"""`cdp sql` and `cdp serve`: tables as layer.table, output formats, time travel."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from jobs.analyst import lake_tables, register_tables, run_sql, start_server


@pytest.fixture()
def lake(spark, settings):
    root = settings.paths.lake
    rfm = str(root / "gold" / "member_rfm")
    day = dt.date(2026, 3, 9)
    spark.createDataFrame(
        [("M1", day, "Champions", "S01"), ("M2", day, "Lost", "S01")],
        "member_id string, as_of_date date, rfm_segment string, store string",
    ).write.format("delta").save(rfm)  # version 0
    spark.createDataFrame(
        [("M3", day, "Champions", "S02")],
        "member_id string, as_of_date date, rfm_segment string, store string",
    ).write.format("delta").mode("append").save(rfm)  # version 1
    spark.createDataFrame([("x", "13800138000")], "k string, phone string").write.format(
        "delta"
    ).save(str(root / "restricted" / "member_pii"))
    spark.createDataFrame([("o1", 10)], "order_id string, n int").write.format("delta").save(
        str(root / "silver" / "orders")
    )
    return root


def test_pii_layers_are_not_registered(lake, monkeypatch):
    monkeypatch.delenv("CDP_ANALYST_INCLUDE_PII", raising=False)
    assert lake_tables(lake) == [("gold", "member_rfm"), ("silver", "orders")]
    assert ("restricted", "member_pii") in lake_tables(lake, include_pii=True)


def test_sql_prints_a_table_of_layer_table_names(lake, spark, settings, capsys):
    run_sql(
        settings,
        "SELECT rfm_segment, count(*) AS n FROM gold.member_rfm GROUP BY rfm_segment "
        "ORDER BY rfm_segment",
        fmt="table",
        spark=spark,
        limit=50,
    )
    out = capsys.readouterr().out
    assert "rfm_segment" in out and "Champions" in out and "Lost" in out
    assert "2 row(s)" in out
    run_sql(settings, "SELECT * FROM gold.member_rfm", fmt="table", limit=1, spark=spark)
    assert "1 row(s) (more rows" in capsys.readouterr().out


def test_sql_time_travel_and_files(lake, spark, settings, tmp_path, capsys):
    run_sql(
        settings,
        "SELECT member_id FROM gold.member_rfm VERSION AS OF 0 ORDER BY member_id",
        fmt="csv",
        spark=spark,
    )
    assert capsys.readouterr().out.split() == ["member_id", "M1", "M2"]
    out = tmp_path / "res" / "rfm.parquet"
    run_sql(settings, "SELECT * FROM gold.member_rfm", fmt="parquet", out=out, spark=spark)
    table = pq.read_table(out)
    assert sorted(table.column("member_id").to_pylist()) == ["M1", "M2", "M3"]
    csv_out = tmp_path / "res" / "by_store.csv"
    run_sql(
        settings,
        "SELECT store, count(*) AS n FROM gold.member_rfm GROUP BY store",
        fmt="csv",
        out=csv_out,
        spark=spark,
    )
    lines = csv_out.read_text().splitlines()
    assert lines[0] == "store,n" and sorted(lines[1:]) == ["S01,2", "S02,1"]
    assert sorted(p.name for p in csv_out.parent.iterdir()) == ["by_store.csv", "rfm.parquet"]


def test_bad_format_and_restricted_table_not_addressable(lake, spark, settings):
    with pytest.raises(ValueError, match="--format"):
        run_sql(settings, "SELECT 1", fmt="xlsx", spark=spark)
    with pytest.raises(Exception, match="(?i)not found"):
        run_sql(settings, "SELECT * FROM restricted.member_pii", fmt="csv", spark=spark)


def test_serve_shares_registered_tables_with_a_client(lake, settings):
    server, url, session = start_server(settings, port=0)
    try:
        client = SparkSession.builder.remote(url).create()
        assert client.session_id == session.session_id
        got = client.sql("SELECT count(*) AS n FROM gold.member_rfm").collect()[0].n
        assert got == 3
        old = client.sql("SELECT count(*) AS n FROM gold.member_rfm VERSION AS OF 0").collect()
        assert old[0].n == 2
        # Re-registering (the periodic refresh) is idempotent.
        assert register_tables(session, lake) == ["gold.member_rfm", "silver.orders"]
    finally:
        session.stop()
        server.stop()
