"""cdp_maintenance: weekly compaction and vacuum of every Delta table under the lake.

Goes through delta-rs (Sail has no OPTIMIZE/VACUUM SQL); retention comes from
conf/maintenance.yaml. The same as `cdp maintain` on the command line.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from jobs.orchestration.settings import load_airflow_conf
from jobs.orchestration.tasks import run_maintenance

conf = load_airflow_conf().maintenance
tz = pendulum.timezone(conf.timezone)

with DAG(
    dag_id="cdp_maintenance",
    description="Weekly Delta OPTIMIZE (compact) and VACUUM of the lake via delta-rs",
    schedule=conf.schedule,
    start_date=pendulum.datetime(
        conf.start_date.year, conf.start_date.month, conf.start_date.day, tz=tz
    ),
    catchup=conf.catchup,
    max_active_runs=1,
    default_args={
        "retries": conf.retries,
        "retry_delay": dt.timedelta(seconds=conf.retry_delay_seconds),
    },
    tags=["cdp", "maintenance"],
    doc_md=__doc__,
) as dag:
    PythonOperator(task_id="compact_and_vacuum", python_callable=run_maintenance)
