"""Seconds per named stage of a step, reported in its figures (``phase_seconds``)."""

from __future__ import annotations

import time


class Laps:
    """Seconds per named stage, each from the end of the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t0 = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._t0, 3)
        self._t0 = now
