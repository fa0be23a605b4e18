"""`cdp sql`, `cdp serve`, `cdp history`, `cdp describe`: tables as layer.table, output
formats, time travel, read-only access, PII out of reach by name and by path, the token."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from jobs.analyst import (
    AnalystConf,
    describe_table,
    history_rows,
    lake_tables,
    register_tables,
    run_sql,
    start_server,
)
from jobs.analyst_guard import AccessDenied


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
    monkeypatch.delenv("CDP_ANALYST_ROLE", raising=False)
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
    with pytest.raises(AccessDenied, match="PII layer"):
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


def _count(spark, lake) -> int:
    return spark.read.format("delta").load(str(lake / "gold" / "member_rfm")).count()


WRITES = [
    "DELETE FROM gold.member_rfm",
    "dElEtE /* hidden */ FROM gold.member_rfm",
    "INSERT INTO gold.member_rfm SELECT * FROM gold.member_rfm",
    "UPDATE gold.member_rfm SET rfm_segment = 'x'",
    "MERGE INTO gold.member_rfm t USING silver.orders s ON t.member_id = s.order_id "
    "WHEN MATCHED THEN DELETE",
    "DROP TABLE gold.member_rfm",
    "CREATE TABLE gold.copy AS SELECT * FROM gold.member_rfm",
    "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
    "ALTER TABLE gold.member_rfm ADD COLUMNS (x int)",
    "TRUNCATE TABLE gold.member_rfm",
    "REPLACE TABLE gold.member_rfm AS SELECT 1 AS x",
    "OPTIMIZE gold.member_rfm",
    "VACUUM gold.member_rfm",
    "COPY INTO gold.member_rfm FROM '/tmp/x'",
    "CACHE TABLE gold.member_rfm",
    "SET spark.sql.ansi.enabled = false",
    "INSERT OVERWRITE DIRECTORY '/tmp/cdp-x' SELECT 1",
    "SELECT 1; DELETE FROM gold.member_rfm",
    "SELECT 1 -- \n; DELETE FROM gold.member_rfm",
    "EXPLAIN DELETE FROM gold.member_rfm",
    "WITH x AS (SELECT 1) INSERT INTO gold.member_rfm SELECT * FROM x",
    "SELECT reflect('java.lang.System', 'exit', 1)",
]


@pytest.mark.parametrize("statement", WRITES)
def test_sql_refuses_every_statement_that_writes(lake, spark, settings, statement):
    with pytest.raises(AccessDenied):
        run_sql(settings, statement, fmt="csv", spark=spark)
    assert _count(spark, lake) == 3
    assert sorted(p.name for p in (lake / "gold").iterdir()) == ["member_rfm"]


def test_sql_reads_with_comments_show_describe_explain(lake, spark, settings, capsys):
    run_sql(
        settings,
        "/* a; DROP TABLE x */ SELECT count(*) AS n -- c\n FROM gold.member_rfm",
        fmt="csv",
        spark=spark,
    )
    assert capsys.readouterr().out.split() == ["n", "3"]
    run_sql(settings, "SHOW TABLES IN gold", fmt="csv", spark=spark)
    assert "member_rfm" in capsys.readouterr().out
    run_sql(settings, "EXPLAIN SELECT * FROM gold.member_rfm", fmt="csv", spark=spark)
    assert capsys.readouterr().out.strip()


def test_pii_layers_are_out_of_reach_by_path(lake, spark, settings, monkeypatch, tmp_path):
    monkeypatch.delenv("CDP_ANALYST_ROLE", raising=False)
    pii = lake / "restricted" / "member_pii"
    part = next(pii.glob("*.parquet"))
    (lake / "gold" / "innocent").symlink_to(pii, target_is_directory=True)
    monkeypatch.chdir(lake)
    tricks = [
        f"SELECT * FROM delta.`{pii}`",
        f"SELECT * FROM `delta`.`{lake}/gold/../restricted/member_pii`",
        f"SELECT * FROM parquet.`{part}`",
        f"SELECT * FROM parquet.`file://{part}`",
        "SELECT * FROM delta.`restricted/member_pii`",  # relative to the working directory
        f"SELECT * FROM delta.`{lake}/gold/innocent`",  # a symlink into restricted
        f"SELECT * FROM parquet.`{lake}/restr*/member_pii`",
        "SELECT * FROM json.`/etc/passwd`",
        "SELECT * FROM read_files('/etc/passwd')",
        "SELECT * FROM gold.member_rfm WHERE member_id IN (SELECT k FROM restricted.member_pii)",
    ]
    for statement in tricks:
        with pytest.raises(AccessDenied):
            run_sql(settings, statement, fmt="csv", spark=spark)
    assert ("gold", "innocent") not in lake_tables(lake)
    with pytest.raises(AccessDenied, match="inside the lake"):  # --out never writes there
        run_sql(settings, "SELECT 1", fmt="parquet", out=lake / "gold" / "x.parquet", spark=spark)
    # A PII role named in conf/analyst.yaml and in the environment lifts the PII part only.
    monkeypatch.setattr("jobs.analyst.load_analyst_conf", lambda: AnalystConf(pii_roles=["dpo"]))
    monkeypatch.setenv("CDP_ANALYST_ROLE", "dpo")
    run_sql(settings, f"SELECT phone FROM delta.`{pii}`", fmt="csv", spark=spark)
    with pytest.raises(AccessDenied):
        run_sql(settings, "DELETE FROM restricted.member_pii", fmt="csv", spark=spark)
    with pytest.raises(AccessDenied, match="outside the lake"):
        run_sql(settings, "SELECT * FROM json.`/etc/passwd`", fmt="csv", spark=spark)


def test_sql_in_a_pipe_never_wraps_and_names_the_lake_of_a_missing_table(
    lake, spark, settings, capsys
):
    long_id = "M" + "0123456789" * 15
    run_sql(settings, f"SELECT '{long_id}' AS member_id, 'x' AS other", spark=spark)
    assert long_id in capsys.readouterr().out  # capsys is not a terminal, like a pipe
    with pytest.raises(ValueError, match="read lake .*gold.member_rfm") as err:
        run_sql(settings, "SELECT * FROM gold.kpi_daily", spark=spark)
    assert str(settings.paths.lake) in str(err.value)


def test_history_and_describe_read_the_delta_log(lake, settings):
    rows = history_rows(settings, "gold.member_rfm")
    assert [r["version"] for r in rows] == [1, 0]
    assert all(r["operation"] and r["time"].endswith("+0800") for r in rows), rows
    info = describe_table(settings, "gold.member_rfm")
    assert info["rows"] == 3 and info["version"] == 1 and info["partitioned_by"] == []
    assert [c[0] for c in info["columns"]] == ["member_id", "as_of_date", "rfm_segment", "store"]
    assert dict((c[0], c[1]) for c in info["columns"])["as_of_date"] == "date"
    with pytest.raises(ValueError, match="restricted.member_pii"):
        describe_table(settings, "restricted.member_pii")  # PII layers are not analyst tables


def test_serve_needs_the_token_and_is_read_only(lake, settings):
    server, url, session = start_server(settings, port=0, token="s" * 32)
    try:
        assert url.startswith("sc://localhost:") and ";token=" + "s" * 32 in url
        for bad in (url.replace("s" * 32, "w" * 32), url.split(";token=")[0]):
            with pytest.raises(Exception, match="UNAUTHENTICATED|token"):
                SparkSession.builder.remote(bad).create().sql("SELECT 1").collect()
        client = SparkSession.builder.remote(url).create()
        refused = [
            lambda: client.sql("DELETE FROM gold.member_rfm").collect(),
            lambda: client.sql(f"SELECT * FROM delta.`{lake}/restricted/member_pii`").collect(),
            lambda: client.read.format("delta").load(f"{lake}/restricted/member_pii").collect(),
            lambda: client.range(1).write.format("delta").save(f"{lake}/gold/new"),
            lambda: client.range(1).selectExpr("reflect('java.lang.System', 'exit', 1)").collect(),
        ]
        for attempt in refused:
            with pytest.raises(Exception, match="cdp serve"):
                attempt()
        assert client.sql("SELECT count(*) AS n FROM gold.member_rfm").collect()[0].n == 3
        assert not (lake / "gold" / "new").exists()
    finally:
        session.stop()
        server.stop()


def _readme_analyst_queries() -> list[str]:
    """The `cdp sql "..."` commands and the SQL examples of the README's Analysts section."""
    import re

    from jobs.config import PROJECT_ROOT

    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Analysts", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r'^cdp sql "([^"]+)"', section, re.MULTILINE)
    sql_block = section.split("```sql", 1)[1].split("```", 1)[0]
    code = "\n".join(line.split("--")[0] for line in sql_block.splitlines())
    return queries + [s for s in code.split(";") if s.strip()]


def test_readme_analyst_examples_run_on_any_lake_without_fixed_dates(spark, settings):
    import re

    from jobs.schemas import table_schema

    lake = settings.paths.lake
    queries = _readme_analyst_queries()
    assert len(queries) >= 6
    for name in (
        "gold/member_rfm",
        "gold/member_features",
        "gold/member_lifecycle",
        "gold/lifecycle_transitions",
        "gold/kpi_daily",
        "silver/web_events",
        "silver/member_xref",
        "silver/orders",
        "silver/order_lines",
    ):  # empty tables with the declared schemas
        spark.createDataFrame([], table_schema(name).struct).write.format("delta").save(
            str(lake / name)
        )
        # The test session is shared: forget a same-named table of an earlier test's lake.
        spark.sql(f"DROP TABLE IF EXISTS {name.replace('/', '.')}")
    for sql in queries:
        assert not re.search(r"'20\d\d-\d\d-\d\d'", sql), sql  # the demo's dates move
        run_sql(settings, sql, fmt="csv", spark=spark)  # analysed and run on the engine


def test_serve_token_comes_from_a_secret_or_is_generated_per_start(tmp_path):
    from jobs.analyst import serve_token

    assert serve_token({"CDP_SERVE_TOKEN": "from-env-0123456789"}) == (
        "from-env-0123456789",
        "CDP_SERVE_TOKEN",
    )
    secret = tmp_path / "token"
    secret.write_text("from-file-0123456789\n")
    assert serve_token({"CDP_SERVE_TOKEN_FILE": str(secret)})[0] == "from-file-0123456789"
    secret.write_text("short")
    with pytest.raises(ValueError, match="16 characters"):
        serve_token({"CDP_SERVE_TOKEN_FILE": str(secret)})
    first, second = serve_token({})[0], serve_token({})[0]
    assert first != second and len(first) >= 32
