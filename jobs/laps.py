"""Seconds per named stage of a step, reported in its figures (``phase_seconds``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class Laps:
    """Seconds per named stage, each from the end of the previous one (a name seen
    again adds to its total)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t0, 3)
        # Each stage as it ends (CDP_LOG_LEVEL=INFO): where a long step is, or failed.
        log.info("stage %s: %.1f s", name, now - self._t0)
        self._t0 = now


class TimedMaterialiser:
    """``materialise`` that also times each intermediate by its name: the seconds since
    the previous one, i.e. computing it and whatever ran in between (Spark is lazy, so a
    materialised intermediate is where the work happens). Passes on ``arrow`` (a driver
    table brought into the engine) and ``slices`` (an intermediate written in parts)
    when ``materialise`` has them."""

    def __init__(self, materialise: Callable[[DataFrame, str], DataFrame], laps: Laps) -> None:
        self.materialise, self.laps = materialise, laps
        inner = getattr(materialise, "arrow", None)
        if inner is not None:
            self.arrow = self._timed(inner)
        slices = getattr(materialise, "slices", None)
        if slices is not None:
            self.slices = self._timed_slices(slices)

    def __call__(self, df: DataFrame, name: str) -> DataFrame:
        out = self.materialise(df, name)
        self.laps(name)
        return out

    def _timed(self, inner: Callable[..., DataFrame]) -> Callable[..., DataFrame]:
        def arrow(spark: SparkSession, table: pa.Table, name: str) -> DataFrame:
            out = inner(spark, table, name)
            self.laps(name)
            return out

        return arrow

    def _timed_slices(
        self, inner: Callable[[Iterable[DataFrame], str], DataFrame]
    ) -> Callable[[Iterable[DataFrame], str], DataFrame]:
        def slices(parts: Iterable[DataFrame], name: str) -> DataFrame:
            out = inner(parts, name)
            self.laps(name)
            return out

        return slices


def timed_materialiser(
    materialise: Callable[[DataFrame, str], DataFrame], laps: Laps
) -> TimedMaterialiser:
    """A :class:`TimedMaterialiser` of ``materialise`` into ``laps``."""
    return TimedMaterialiser(materialise, laps)
