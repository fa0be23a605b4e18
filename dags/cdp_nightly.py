"""cdp_nightly: the nightly CDP pipeline, one Airflow task per step of jobs/pipeline.py.

At 02:00 Asia/Shanghai on day X it processes business date X-1 (see
jobs/orchestration/dates.py). A reschedule-mode sensor per source waits for the day's
`_SUCCESS` marker, then ingest_pos/web/crm run in parallel and the rest follows the
`Step.after` graph. Catch-up is bounded by ``max_catchup_days`` (conf/airflow.yaml);
history is loaded with ``airflow backfill create`` (README). No logic and nothing heavy here: the graph, the settings and the
callables come from jobs.orchestration; Spark starts only inside a running task.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset
from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable

from jobs.orchestration.graph import nightly_tasks, sensor_task_id
from jobs.orchestration.sensors import LandingReadySensor
from jobs.orchestration.settings import load_airflow_conf, schedule_start
from jobs.orchestration.tasks import run_pipeline_step

conf = load_airflow_conf().nightly
tz = pendulum.timezone(conf.timezone)
start = schedule_start(conf, pendulum.today(tz).date())

with DAG(
    dag_id="cdp_nightly",
    description="Nightly CDP batch: landing -> bronze -> silver -> gold -> exports -> report",
    schedule=CronTriggerTimetable(conf.schedule, timezone=tz),
    start_date=pendulum.datetime(start.year, start.month, start.day, tz=tz),
    catchup=conf.max_catchup_days > 0,  # never a run per day since start_date on deploy
    max_active_runs=conf.max_active_runs,
    default_args={
        "retries": conf.retries,
        "retry_delay": dt.timedelta(seconds=conf.retry_delay_seconds),
        "retry_exponential_backoff": conf.retry_exponential_backoff,
        "max_retry_delay": dt.timedelta(seconds=conf.max_retry_delay_seconds),
        "execution_timeout": dt.timedelta(minutes=conf.step_timeout_minutes),
    },
    tags=["cdp"],
    doc_md=__doc__,
) as dag:
    tasks = {}
    for spec in nightly_tasks():
        tasks[spec.task_id] = PythonOperator(
            task_id=spec.task_id,
            python_callable=run_pipeline_step,
            op_kwargs={"step": spec.step},
            outlets=[Asset(uri) for uri in spec.outlets],
        )
        if spec.source:
            tasks[sensor_task_id(spec.source)] = LandingReadySensor(
                task_id=sensor_task_id(spec.source),
                source=spec.source,
                poke_interval=conf.sensor_poke_seconds,
                timeout=dt.timedelta(hours=conf.sensor_timeout_hours),
                retries=0,  # a timed-out wait is final for the run: its message says what is missing
            )
    for spec in nightly_tasks():
        for upstream in spec.upstream:
            tasks[upstream] >> tasks[spec.task_id]
