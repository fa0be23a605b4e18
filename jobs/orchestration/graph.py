"""The nightly task graph, derived from ``jobs.pipeline.STEPS`` (``Step.after``).

The DAG file asks this module what to build, so the dependency graph lives in one
place: a new step in ``jobs/pipeline.py`` appears in Airflow without touching
``dags/``. Also which lake tables and export folders each step publishes, as Airflow
Asset URIs (``x-cdp://lake/<layer>/<table>``, ``x-cdp://exports/<what>``): logical
names, independent of where a deployment keeps its lake.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.pipeline import STEPS
from jobs.sources import SOURCES

# Steps that read one landing source wait for that source's `_SUCCESS` marker first.
SOURCE_OF_STEP: dict[str, str] = {s.ingest_step: s.name for s in SOURCES.values()}

# What each step (re)writes that downstream consumers care about.
OUTLETS: dict[str, tuple[str, ...]] = {
    "identity": ("lake/silver/members", "lake/silver/member_xref", "lake/silver/member_id_changes"),
    "points_ledger": ("lake/silver/points_ledger",),
    "orders": ("lake/silver/orders",),
    "features": ("lake/gold/member_features",),
    "value": ("lake/gold/member_value", "lake/gold/value_model"),
    "rfm": ("lake/gold/member_rfm", "lake/gold/member_tier_changes"),
    "points": ("lake/gold/member_points",),
    "tags": ("lake/gold/member_tags", "lake/gold/member_tag_changes"),
    "lifecycle": ("lake/gold/member_lifecycle", "lake/gold/lifecycle_transitions"),
    "kpis": ("lake/gold/kpi_daily",),
    "channels": ("lake/gold/member_channels",),
    "exports": ("exports/segments",),
    "report": ("exports/report",),
}

ASSET_SCHEME = "x-cdp"


@dataclass(frozen=True)
class TaskSpec:
    task_id: str
    step: str
    upstream: tuple[str, ...]
    source: str | None  # landing source it waits for, if any
    outlets: tuple[str, ...]  # asset URIs


def asset_uri(name: str) -> str:
    return f"{ASSET_SCHEME}://{name}"


def sensor_task_id(source: str) -> str:
    return f"wait_{source}"


def nightly_tasks() -> list[TaskSpec]:
    """One task per pipeline step, in pipeline order, with its upstream tasks."""
    specs = []
    for step in STEPS:
        source = SOURCE_OF_STEP.get(step.name)
        upstream = tuple(step.after) + ((sensor_task_id(source),) if source else ())
        specs.append(
            TaskSpec(
                task_id=step.name,
                step=step.name,
                upstream=upstream,
                source=source,
                outlets=tuple(asset_uri(n) for n in OUTLETS.get(step.name, ())),
            )
        )
    return specs
