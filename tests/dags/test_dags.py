"""The DAG files: import cleanly and fast, without pyspark, and build the right graph.

Airflow is loaded in a subprocess with a throw-away AIRFLOW_HOME, so the test
process never touches ~/airflow and the pyspark check is not fooled by modules
other tests imported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.config import PROJECT_ROOT
from jobs.orchestration.dates import business_date, run_id_for, trigger_time
from jobs.orchestration.settings import NightlyConf, load_airflow_conf, schedule_start

DAGS = PROJECT_ROOT / "dags"

PROBE = r"""
import json, sys, time
import airflow.sdk  # the cost of Airflow itself is not the DAG file's
from airflow.dag_processing.dagbag import DagBag

t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - t0
out = {"seconds": seconds, "errors": {k: str(v) for k, v in bag.import_errors.items()},
       "pyspark": sorted(m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")),
       "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "timetable": repr(dag.timetable),
        "catchup": dag.catchup,
        "start_date": str(dag.start_date),
        "max_active_runs": dag.max_active_runs,
        "tasks": {
            t.task_id: {
                "upstream": sorted(t.upstream_task_ids),
                "outlets": [a.uri for a in t.outlets],
                "mode": getattr(t, "mode", None),
                "retries": t.retries,
                "backoff": t.retry_exponential_backoff,
                "timeout": getattr(t, "timeout", None),
                "callable": getattr(getattr(t, "python_callable", None), "__name__", None),
            }
            for t in dag.tasks
        },
    }
print("@@" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
    }
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


def test_dag_files_import_without_errors_fast_and_without_pyspark(parsed):
    assert parsed["errors"] == {}
    assert set(parsed["dags"]) == {"cdp_nightly", "cdp_maintenance"}
    assert parsed["seconds"] < 2.0, f"parsing dags/ took {parsed['seconds']:.2f}s"
    assert parsed["pyspark"] == [], "a DAG file pulled in pyspark at parse time"


def test_nightly_graph_follows_pipeline_steps(parsed):
    tasks = parsed["dags"]["cdp_nightly"]["tasks"]
    expected_upstream = {
        "wait_pos": [],
        "wait_web": [],
        "wait_crm": [],
        "wait_loyalty": [],
        "ingest_pos": ["wait_pos"],
        "ingest_web": ["wait_web"],
        "ingest_crm": ["wait_crm"],
        "ingest_loyalty": ["wait_loyalty"],
        "quality": ["ingest_crm", "ingest_loyalty", "ingest_pos", "ingest_web"],
        "identity": ["quality"],
        "points_ledger": ["identity"],
        "orders": ["identity"],
        "features": ["orders"],
        "value": ["orders"],
        "rfm": ["features"],
        "points": ["points_ledger"],
        "tags": ["points", "rfm", "value"],
        "lifecycle": ["features", "value"],
        "kpis": ["lifecycle", "rfm", "tags", "value"],
        "channels": ["orders"],
        "exports": ["channels", "kpis"],
        "report": ["exports"],
    }
    assert {k: v["upstream"] for k, v in tasks.items()} == expected_upstream
    for source in ("pos", "web", "crm", "loyalty"):
        assert tasks[f"wait_{source}"]["mode"] == "reschedule"
        assert tasks[f"wait_{source}"]["retries"] == 0
    for name, spec in tasks.items():
        if not name.startswith("wait_"):
            assert spec["callable"] == "run_pipeline_step"
            assert spec["retries"] >= 1 and spec["backoff"] > 0, name


def test_nightly_schedule_and_assets(parsed):
    dag = parsed["dags"]["cdp_nightly"]
    assert "CronTriggerTimetable" in dag["timetable"]
    assert "0 2 * * *" in dag["timetable"] and "Asia/Shanghai" in dag["timetable"]
    # A deploy queues no run per day since start_date: no catch-up by default.
    assert dag["catchup"] is False
    assert dag["start_date"] == "2025-12-31 16:00:00+00:00"  # 2026-01-01 00:00 in Shanghai
    assert dag["max_active_runs"] == 1
    tasks = dag["tasks"]
    assert "x-cdp://lake/gold/member_rfm" in tasks["rfm"]["outlets"]
    assert "x-cdp://lake/gold/member_lifecycle" in tasks["lifecycle"]["outlets"]
    assert "x-cdp://lake/gold/member_value" in tasks["value"]["outlets"]
    assert tasks["kpis"]["outlets"] == ["x-cdp://lake/gold/kpi_daily"]
    assert tasks["points"]["outlets"] == ["x-cdp://lake/gold/member_points"]
    assert tasks["exports"]["outlets"] == ["x-cdp://exports/segments"]


def test_catch_up_is_bounded_by_a_window_that_follows_today():
    assert load_airflow_conf().nightly.max_catchup_days == 0
    floor = dt.date(2026, 1, 1)
    today = dt.date(2026, 11, 30)
    assert schedule_start(NightlyConf(start_date=floor), today) == floor
    window = NightlyConf(start_date=floor, max_catchup_days=3)
    assert schedule_start(window, today) == dt.date(2026, 11, 27)
    assert schedule_start(window, dt.date(2026, 1, 2)) == floor  # never before start_date
    with pytest.raises(ValueError, match="catchup"):
        NightlyConf.model_validate({"catchup": True})  # the old unbounded switch is gone
    with pytest.raises(ValueError):
        NightlyConf(max_catchup_days=400)


def test_dags_show_renders_without_a_graphviz_warning(tmp_path):
    # `airflow dags show` prints DOT source through the graphviz package (no `dot`
    # binary needed); without the package Airflow warns on every CLI start.
    probe = (
        "import warnings; warnings.simplefilter('error')\n"
        "import airflow.utils.dot_renderer as r\n"
        "g = r.graphviz.Digraph(); g.edge('wait_pos', 'ingest_pos'); print(g.source)"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wait_pos -> ingest_pos" in proc.stdout


def test_maintenance_dag(parsed):
    dag = parsed["dags"]["cdp_maintenance"]
    assert list(dag["tasks"]) == ["compact_and_vacuum"]
    assert dag["tasks"]["compact_and_vacuum"]["callable"] == "run_maintenance"
    assert dag["catchup"] is False


def test_dag_files_import_nothing_heavy_at_top_level():
    # Not only at runtime: the source of every DAG file imports only airflow, pendulum,
    # the standard library and jobs.orchestration.
    import ast

    for path in DAGS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                root = (mod or "").split(".")[0]
                assert root in {"__future__", "datetime", "pendulum", "airflow", "jobs"}, (
                    path.name,
                    mod,
                )
                if root == "jobs":
                    assert mod.startswith("jobs.orchestration"), (path.name, mod)


# ---- business date semantics ------------------------------------------------------------
SH = dt.timezone(dt.timedelta(hours=8))


def test_scheduled_run_at_two_am_processes_previous_day():
    # The trigger at 2026-03-10 02:00 +08:00 is 2026-03-09 18:00 UTC: still the 10th in Shanghai.
    logical = dt.datetime(2026, 3, 9, 18, 0, tzinfo=dt.UTC)
    assert business_date(logical) == dt.date(2026, 3, 9)
    assert business_date(dt.datetime(2026, 3, 10, 2, 0, tzinfo=SH)) == dt.date(2026, 3, 9)
    # Month and year boundaries.
    assert business_date(dt.datetime(2026, 1, 1, 2, 0, tzinfo=SH)) == dt.date(2025, 12, 31)


def test_manual_run_without_logical_date_uses_run_after_and_conf_wins():
    run_after = dt.datetime(2026, 3, 10, 9, 30, tzinfo=SH)
    assert business_date(None, run_after) == dt.date(2026, 3, 9)
    assert business_date(None, run_after, {"business_date": "2026-02-01"}) == dt.date(2026, 2, 1)
    with pytest.raises(ValueError):
        business_date(None, None)


def test_trigger_time_is_the_inverse():
    for day in (dt.date(2026, 3, 9), dt.date(2025, 12, 31)):
        assert business_date(trigger_time(day)) == day


def test_run_id_is_stable_per_dag_run():
    a = run_id_for("cdp_nightly", "scheduled__2026-03-10T02:00:00+08:00")
    assert a == run_id_for("cdp_nightly", "scheduled__2026-03-10T02:00:00+08:00")
    assert a != run_id_for("cdp_nightly", "scheduled__2026-03-11T02:00:00+08:00")
    assert len(a) == 16


# ---- the landing sensor -----------------------------------------------------------------
SENSOR_PROBE = r"""
import datetime as dt, sys, types
from airflow.sdk.exceptions import AirflowSensorTimeout
from jobs.orchestration.sensors import LandingReadySensor

ctx = {"logical_date": dt.datetime(2026, 3, 10, 2, tzinfo=dt.timezone(dt.timedelta(hours=8))),
       "dag_run": types.SimpleNamespace(conf={}, run_after=None),
       "ti": types.SimpleNamespace(try_number=1)}
s = LandingReadySensor(task_id="wait_pos", source="pos", mode="poke", poke_interval=0.05,
                       timeout=0.2)
print("poke", s.poke(ctx))
if sys.argv[1] == "timeout":
    try:
        s.execute(ctx)
    except AirflowSensorTimeout as exc:
        print("timeout", exc)
"""


def _sensor(tmp_path: Path, mode: str) -> str:
    home = tmp_path / "af"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CDP_LANDING": str(tmp_path / "landing"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SENSOR_PROBE, mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sensor_waits_for_success_marker_of_the_business_date(tmp_path):
    day = tmp_path / "landing" / "pos" / "2026-03-09"
    day.mkdir(parents=True)
    (day / "pos_S01_20260309.csv").write_text("order_id\n")
    out = _sensor(tmp_path, "timeout")
    assert "poke False" in out
    # The failure names the folder and the source.
    assert "timeout landing not ready" in out
    assert str(day / "_SUCCESS") in out and "pos export for 2026-03-09" in out
    (day / "_SUCCESS").write_text("")
    assert "poke True" in _sensor(tmp_path, "poke")


def test_sensor_of_an_optional_source_does_not_wait_for_a_system_the_chain_lacks(tmp_path):
    probe = SENSOR_PROBE.replace('"wait_pos", source="pos"', '"wait_loyalty", source="loyalty"')
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "af"), "CDP_LANDING": str(tmp_path)}

    def poke() -> str:
        proc = subprocess.run([sys.executable, "-c", probe, "poke"], capture_output=True,
                              text=True, env=env, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    assert "poke True" in poke()  # no loyalty/ folder at all: a chain without the system
    (tmp_path / "loyalty" / "2026-03-08").mkdir(parents=True)
    assert "poke False" in poke()  # once it delivers, its days are waited for


@pytest.mark.parametrize("conf, recompute", [({}, False), ({"recompute": True}, True)])
def test_a_dag_run_conf_can_ask_for_a_recompute(monkeypatch, conf, recompute):
    """``"recompute": true`` in the DAG run's conf reaches the step's context (jobs.memo)."""
    import types

    import jobs.context
    import jobs.pipeline
    from jobs.orchestration.tasks import run_pipeline_step

    seen = {}

    def make_context(settings, as_of, run_id=None, allow_incomplete=False, recompute=False):
        seen.update(as_of=as_of, recompute=recompute)
        return types.SimpleNamespace(run_id=run_id)

    monkeypatch.setattr(jobs.context, "make_context", make_context)
    monkeypatch.setattr(jobs.pipeline, "run_step", lambda ctx, step: {"step": step.name})
    run = types.SimpleNamespace(
        conf={"business_date": "2026-11-20", **conf}, run_id="manual__x", dag_id="cdp_nightly"
    )
    assert run_pipeline_step("features", dag_run=run, logical_date=None) == {"step": "features"}
    assert seen == {"as_of": dt.date(2026, 11, 20), "recompute": recompute}
