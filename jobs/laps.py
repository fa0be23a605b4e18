"""Seconds per named stage of a step, reported in its figures (``phase_seconds``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pyspark.sql import DataFrame


class Laps:
    """Seconds per named stage, each from the end of the previous one (a name seen
    again adds to its total)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._t0, 3)
        self._t0 = now


def timed_materialiser(
    materialise: Callable[[DataFrame, str], DataFrame], laps: Laps
) -> Callable[[DataFrame, str], DataFrame]:
    """``materialise`` that also times each intermediate by its name: the seconds since
    the previous one, i.e. computing it and whatever ran in between (Spark is lazy, so a
    materialised intermediate is where the work happens)."""

    def mat(df: DataFrame, name: str) -> DataFrame:
        out = materialise(df, name)
        laps(name)
        return out

    return mat
