"""Airflow glue: what the thin DAG files in ``dags/`` reference.

Nothing here imports pyspark at module level (the scheduler parses the
DAG files often); Spark starts inside a task, in :mod:`jobs.orchestration.tasks`.
Only :mod:`jobs.orchestration.sensors` imports Airflow (the DAG files do anyway).
"""
