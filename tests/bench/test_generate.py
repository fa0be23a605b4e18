"""bench/run.py generates the landing zone in a process of its own, once per --out."""

from __future__ import annotations

import datetime as dt
import json

import psutil

from bench import run as bench_run


def workers() -> set[int]:
    """This process's children, less multiprocessing's resource tracker (it lives on)."""
    children = psutil.Process().children(recursive=True)
    return {child.pid for child in children if "resource_tracker" not in " ".join(child.cmdline())}


def test_the_landing_is_generated_in_a_child_and_then_reused(tmp_path):
    before = workers()  # other tests' engines and workers may live on in this process
    landing, summary, seconds = bench_run.generate(tmp_path, 300, 3, 7, dt.date(2026, 11, 20))

    assert seconds > 0
    assert summary["members"] == 300 and summary["pos_lines"] > 0
    assert sorted(p.name for p in landing.iterdir() if p.is_dir()) == [
        "crm", "loyalty", "pos", "truth", "web"
    ]  # fmt: skip
    assert json.loads((landing / ".complete").read_text())["pos_lines"] == summary["pos_lines"]
    assert workers() <= before  # the generator's process has ended

    again, cached, cached_seconds = bench_run.generate(tmp_path, 300, 3, 7, dt.date(2026, 11, 20))
    assert (again, cached_seconds) == (landing, 0.0)
    assert cached["pos_lines"] == summary["pos_lines"]
