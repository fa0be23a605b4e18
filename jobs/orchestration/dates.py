"""Which business date a DAG run processes.

``cdp_nightly`` runs on a cron *trigger* timetable (the Airflow 3 default for a cron
string): the run fired at 02:00 Asia/Shanghai on day X has logical date X 02:00 and
an empty data interval, and processes business date X-1, the day the stores have
just closed. A manual run without a logical date (Airflow 3 allows it) uses its
``run_after`` the same way, and ``{"business_date": "YYYY-MM-DD"}`` in the run's
conf names the date outright (re-running one old day by hand).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

BUSINESS_TZ = "Asia/Shanghai"


def business_date(
    logical_date: dt.datetime | None,
    run_after: dt.datetime | None = None,
    conf: Mapping[str, Any] | None = None,
    tz: str = BUSINESS_TZ,
) -> dt.date:
    """The business date of a run: the store-local day before its trigger time."""
    if conf and conf.get("business_date"):
        return dt.date.fromisoformat(str(conf["business_date"]))
    ref = logical_date or run_after
    if ref is None:
        raise ValueError("a DAG run needs a logical date, a run_after or conf.business_date")
    if ref.tzinfo is None:  # Airflow always passes aware datetimes; naive ones are UTC
        ref = ref.replace(tzinfo=dt.UTC)
    return ref.astimezone(ZoneInfo(tz)).date() - dt.timedelta(days=1)


def trigger_time(business: dt.date, hour: int = 2, tz: str = BUSINESS_TZ) -> dt.datetime:
    """The logical date of the scheduled run that processes ``business`` (its inverse)."""
    day = business + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(tz))


def context_business_date(context: Mapping[str, Any]) -> dt.date:
    """:func:`business_date` from an Airflow task context."""
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    run_after = getattr(dag_run, "run_after", None)
    return business_date(context.get("logical_date"), run_after, conf)


def run_id_for(dag_id: str, airflow_run_id: str) -> str:
    """One pipeline run_id per DAG run, stable across task retries (16 hex like the CLI's)."""
    import hashlib

    return hashlib.sha1(f"{dag_id}/{airflow_run_id}".encode()).hexdigest()[:16]
