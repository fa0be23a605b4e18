"""bench/run.py generates the landing zone (in a spawned process) once per --out, then reuses it."""

from __future__ import annotations

import datetime as dt
import json

from bench import run as bench_run


def test_the_landing_is_generated_once_then_reused(tmp_path):
    landing, summary, seconds = bench_run.generate(tmp_path, 300, 3, 7, dt.date(2026, 11, 20))

    assert seconds > 0
    assert summary["members"] == 300 and summary["pos_lines"] > 0
    assert sorted(p.name for p in landing.iterdir() if p.is_dir()) == [
        "crm", "loyalty", "pos", "truth", "web"
    ]  # fmt: skip
    assert json.loads((landing / ".complete").read_text())["pos_lines"] == summary["pos_lines"]

    again, cached, cached_seconds = bench_run.generate(tmp_path, 300, 3, 7, dt.date(2026, 11, 20))
    assert (again, cached_seconds) == (landing, 0.0)
    assert cached["pos_lines"] == summary["pos_lines"]
