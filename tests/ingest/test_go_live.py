"""Go-live: years of history in one run, then nightly runs (issue 12 item 10).

A chain loading its sales history at go-live sends day folders back to the 1990s.
CONTRACT 1 sets no age limit: the first `cdp run --date <go-live day>` takes every
ready day folder up to that date, and the next night takes only the new day. An
earliest date can still be set in conf/pipeline.yaml (``ingest.earliest_date``).
Both through the command line, as an operator runs them (docs/bad_input.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from jobs.config import CONF_DIR
from tests.ingest.landing_fixtures import event, sale, write_crm, write_pos, write_web
from tests.reliability.cli import INGEST_STEPS, cdp_env, run_cdp

pytestmark = pytest.mark.slow

GO_LIVE, NEXT = "2026-11-05", "2026-11-06"
HISTORY = ["1998-03-01", "2003-07-15", "2026-11-04"]
PHONE = "13912345678"


def _member(crm_id: str, phone: str, day: str) -> str:
    return (
        f"{crm_id},,{phone},,,,会员,F,1970-05-06,,,1997-06-01 10:00:00,store,,Y,N,N,active,"
        f"{day} 09:00:00"
    )


def _day(landing: Path, day: str, n: int) -> None:
    """One ready day in every source: ``n`` POS sales by a member's phone, an event, a member."""
    write_pos(
        landing,
        day,
        "S01",
        [sale(f"{day}-{i}", 1, f"{day} 1{i}:00:00", card="", phone=PHONE) for i in range(n)],
    )
    write_web(landing, day, "p1", [event(f"e-{day}", f"{day}T10:00:00+08:00")])
    write_crm(landing, day, [_member("C1", PHONE, day)])


def _history(landing: Path) -> None:
    for day in HISTORY:  # history: POS only, every folder ready
        write_pos(
            landing, day, "S01", [sale(f"{day}-h", 1, f"{day} 09:00:00", card="", phone=PHONE)]
        )
    _day(landing, GO_LIVE, 2)


def _read(spark, base: Path, table: str):
    return spark.read.format("delta").load(str(base / "lake" / table))


def test_history_since_1998_in_one_run_then_nightly(spark, tmp_path):
    landing = tmp_path / "landing"
    _history(landing)
    env = cdp_env(tmp_path)
    first = run_cdp(["run", "--date", GO_LIVE], env)
    assert first.returncode == 0, first.stderr
    bronze = _read(spark, tmp_path, "bronze/pos_lines")
    dates = sorted(str(r.order_date) for r in bronze.select("order_date").distinct().collect())
    assert dates == [*HISTORY, GO_LIVE]
    assert _read(spark, tmp_path, "quarantine/pos").count() == 0
    orders = _read(spark, tmp_path, "silver/orders")
    assert orders.filter(F.year("order_date") == 1998).count() == 1
    # The member's orders by phone, history included, all joined the member.
    members = {r.member_id for r in orders.select("member_id").distinct().collect()}
    assert orders.count() == 5 and len(members) == 1 and None not in members

    _day(landing, NEXT, 1)
    second = run_cdp(["run", "--date", NEXT], env)
    assert second.returncode == 0, second.stderr
    manifest = _read(spark, tmp_path, "meta/ingest_manifest")
    runs = {r.run_id for r in manifest.collect()}
    assert len(runs) == 2  # the night took in only its own day
    last = manifest.filter(F.col("business_date") == NEXT).select("run_id").distinct().collect()
    newest = {r._source_file for r in manifest.filter(F.col("run_id") == last[0].run_id).collect()}
    assert newest == {
        f"pos/{NEXT}/pos_S01_20261106.csv",
        f"web/{NEXT}/events_20261106_p1.jsonl",
        f"crm/{NEXT}/members_20261106.csv",
    }
    assert _read(spark, tmp_path, "silver/orders").count() == 6


def test_an_earliest_date_in_conf_quarantines_older_rows(spark, tmp_path):
    landing = tmp_path / "landing"
    _history(landing)
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["earliest_date"] = "2000-01-01"
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    env = cdp_env(tmp_path, CDP_CONF_DIR=str(conf))
    proc = run_cdp(["run", "--date", GO_LIVE, "--steps", INGEST_STEPS], env)
    assert proc.returncode == 0, proc.stderr
    q = _read(spark, tmp_path, "quarantine/pos").collect()
    assert [(r._source_file, r._reasons) for r in q] == [
        ("pos/1998-03-01/pos_S01_19980301.csv", ["order_ts_out_of_range"])
    ]
    bronze = _read(spark, tmp_path, "bronze/pos_lines")
    assert bronze.filter(F.year("order_date") < 2000).count() == 0
    assert bronze.count() == 4  # 2003, 2026-11-04 and two on the go-live day
    quality = _read(spark, tmp_path, "meta/runs").filter("step = 'quality'").first()
    assert json.loads(quality.detail)["quarantine_rate_pos"] == pytest.approx(0.2)


def test_an_earliest_date_that_is_not_a_date_is_refused_at_load(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["earliest_date"] = "the nineties"
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    proc = run_cdp(["run", "--date", GO_LIVE], cdp_env(tmp_path, CDP_CONF_DIR=str(conf)))
    assert proc.returncode != 0 and "ingest.earliest_date" in proc.stderr
    assert "Traceback" not in proc.stderr
