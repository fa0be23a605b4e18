"""``conf/airflow.yaml``: schedules, retries and sensor timing of the DAGs.

Light on purpose (pydantic + yaml): the DAG files read it at parse time.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pydantic import Field

from jobs.config import StrictModel, load_model


class NightlyConf(StrictModel):
    schedule: str = "0 2 * * *"
    timezone: str = "Asia/Shanghai"
    start_date: dt.date = dt.date(2026, 1, 1)
    # Scheduled runs the scheduler creates for missed days, at most this many days back
    # (0: only the latest). Older history: `airflow backfill create` (README).
    max_catchup_days: int = Field(0, ge=0, le=31)
    max_active_runs: int = Field(1, ge=1)
    retries: int = Field(3, ge=0)
    retry_delay_seconds: int = Field(120, ge=1)
    retry_exponential_backoff: float = Field(2.0, ge=0)
    max_retry_delay_seconds: int = Field(1800, ge=1)
    step_timeout_minutes: int = Field(120, ge=1)
    sensor_poke_seconds: int = Field(300, ge=1)
    sensor_timeout_hours: float = Field(10, gt=0)


def schedule_start(conf: NightlyConf, today: dt.date) -> dt.date:
    """The DAG's start date: ``start_date``, or with catch-up the first day of the window.

    With ``max_catchup_days`` N > 0 the scheduler creates runs for the last N missed
    nights only: the start date follows today (minus N days), never before ``start_date``.
    Backfills are not bound by it (Airflow creates every task of a backfill run).
    """
    if conf.max_catchup_days == 0:
        return conf.start_date
    return max(conf.start_date, today - dt.timedelta(days=conf.max_catchup_days))


class MaintenanceDagConf(StrictModel):
    schedule: str = "0 4 * * 0"
    timezone: str = "Asia/Shanghai"
    start_date: dt.date = dt.date(2026, 1, 1)
    catchup: bool = False
    retries: int = Field(1, ge=0)
    retry_delay_seconds: int = Field(600, ge=1)


class AirflowConf(StrictModel):
    nightly: NightlyConf = NightlyConf()
    maintenance: MaintenanceDagConf = MaintenanceDagConf()


def load_airflow_conf(conf_dir: Path | None = None) -> AirflowConf:
    """conf/airflow.yaml; ``CDP_AIRFLOW_RETRIES`` overrides the nightly task retries.

    The demo and the end-to-end test set it to 0: ``airflow dags test`` would otherwise
    sit through the exponential backoff of a failing step before reporting it.
    """
    conf = load_model("airflow.yaml", AirflowConf, conf_dir)
    retries = os.environ.get("CDP_AIRFLOW_RETRIES")
    if retries:
        nightly = conf.nightly.model_copy(update={"retries": int(retries)})
        conf = conf.model_copy(update={"nightly": nightly})
    return conf
