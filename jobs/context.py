"""What every job step receives: settings, the Spark session, the lake and the date."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass, field
from functools import cached_property

from pyspark.sql import SparkSession

from jobs.config import Settings
from jobs.lake import Lake


@dataclass
class RunContext:
    settings: Settings
    spark: SparkSession
    as_of: dt.date
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    allow_incomplete: bool = False
    # Run every step even where jobs.memo would skip it (inputs unchanged).
    recompute: bool = False

    @cached_property
    def lake(self) -> Lake:
        return Lake(self.spark, self.settings.paths.lake)

    @cached_property
    def pii_key(self) -> bytes:
        from jobs.privacy.pii import load_key

        return load_key(self.settings.privacy, self.settings.paths.lake).key

    @property
    def as_of_str(self) -> str:
        return self.as_of.isoformat()

    def on(self, spark: SparkSession) -> RunContext:
        """This context on another session (jobs.engine.step_spark): the same run, the
        same lake (a backfill's scratch silver included) and key; ``self`` when
        ``spark`` is its own session."""
        if spark is self.spark:
            return self
        moved = dataclasses.replace(self, spark=spark)
        moved.__dict__["lake"] = self.lake.on(spark)
        moved.__dict__.update({k: v for k, v in self.__dict__.items() if k == "pii_key"})
        return moved


def make_context(
    settings: Settings,
    as_of: dt.date,
    run_id: str | None = None,
    allow_incomplete: bool = False,
    recompute: bool = False,
) -> RunContext:
    """A context on the process's Spark session for ``settings.engine``."""
    from jobs.engine import get_spark

    ctx = RunContext(
        settings=settings,
        spark=get_spark(settings.engine),
        as_of=as_of,
        allow_incomplete=allow_incomplete,
        recompute=recompute,
    )
    if run_id:
        ctx.run_id = run_id
    return ctx
