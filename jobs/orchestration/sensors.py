"""The landing sensor: wait for ``<landing>/<source>/<D>/_SUCCESS`` (CONTRACT 1).

Reschedule mode: between pokes the sensor gives its worker slot back, so a late
export does not hold a slot for hours. On timeout it fails with a message that
names the folder it waited for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout


def success_marker(landing: Path, source: str, business: Any) -> Path:
    return Path(landing) / source / str(business) / "_SUCCESS"


class LandingReadySensor(BaseSensorOperator):
    """Succeeds once the day folder of ``source`` for the run's business date is complete."""

    template_fields = ("source",)
    ui_color = "#e8f4ff"

    def __init__(self, *, source: str, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.source = source

    def _marker(self, context: Any) -> Path:
        from jobs.config import load_settings
        from jobs.orchestration.dates import context_business_date

        settings = load_settings()
        return success_marker(settings.paths.landing, self.source, context_business_date(context))

    def poke(self, context: Any) -> bool:
        from jobs.sources import SOURCES

        marker = self._marker(context)
        source_root = marker.parent.parent
        if SOURCES[self.source].optional and not source_root.is_dir():
            self.log.info("%s: no %s folder at all, an optional source: not waiting", source_root,
                          self.source)  # fmt: skip
            return True
        self.log.info("looking for %s", marker)
        return marker.exists()

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            marker = self._marker(context)
            raise AirflowSensorTimeout(
                f"landing not ready: {marker} did not appear within {self.timeout:.0f}s; "
                f"the {self.source} export for {marker.parent.name} has not been delivered "
                f"(or its _SUCCESS marker is missing). Deliver it and clear this task. ({exc})"
            ) from exc
