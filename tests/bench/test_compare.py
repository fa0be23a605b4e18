"""bench/compare.py: each step's ratio to a baseline run, and the regressions flagged."""

from __future__ import annotations

import json
from pathlib import Path

from bench.compare import compare, main


def _result(identity: float, orders: float, night_identity: float) -> dict:
    def phase(steps: dict[str, float]) -> dict:
        return {"seconds": sum(steps.values()),
                "steps": [{"step": k, "seconds": v} for k, v in steps.items()]}  # fmt: skip

    return {
        "members": 100_000,
        "days": 90,
        "a_full_first_run": phase({"ingest_pos": 15.0, "identity": identity, "orders": orders}),
        "b_nightly": phase({"identity": night_identity}),
    }


def _write(path: Path, result: dict) -> str:
    path.write_text(json.dumps(result), encoding="utf-8")
    return str(path)


def test_ratios_per_phase_and_step_with_missing_steps():
    rows = compare(_result(10.0, 4.0, 8.0), _result(20.0, 4.0, 8.0) | {"c_rerun": {}})
    got = {(r.phase, r.step): (r.baseline, r.new, r.ratio) for r in rows}
    assert got[("full", "identity")] == (10.0, 20.0, 2.0)
    assert got[("full", "orders")] == (4.0, 4.0, 1.0)
    assert got[("full", "(total)")] == (29.0, 39.0, 39.0 / 29.0)
    assert got[("night", "identity")] == (8.0, 8.0, 1.0)
    assert not any(r.phase == "rerun" for r in rows)


def test_a_step_slower_by_the_ratio_and_the_seconds_fails(tmp_path, capsys):
    old = _write(tmp_path / "old.json", _result(10.0, 4.0, 8.0))
    slower = _write(tmp_path / "new.json", _result(66.0, 4.0, 8.0))
    assert main([old, slower]) == 1
    out = capsys.readouterr().out
    assert "full/identity 6.6x" in out and "REGRESSION" in out


def test_small_steps_and_small_ratios_pass(tmp_path):
    old = _write(tmp_path / "old.json", _result(10.0, 1.0, 8.0))
    # orders 3x but 2 s more (noise on a small step); identity 1.4x.
    new = _write(tmp_path / "new.json", _result(14.0, 3.0, 8.0))
    assert main([old, new]) == 0
    assert main([old, new, "--min-seconds", "1"]) == 1


def test_cpu_ratio_and_the_hosts_other_cpu_where_both_runs_counted_them(tmp_path, capsys):
    old, new = _result(10.0, 4.0, 8.0), _result(15.0, 4.0, 8.0)
    old["a_full_first_run"]["steps"][1] |= {"cpu_seconds": 18.0, "other_cpu_seconds": 0.5}
    new["a_full_first_run"]["steps"][1] |= {"cpu_seconds": 18.9, "other_cpu_seconds": 9.8}
    rows = {(r.phase, r.step): r for r in compare(old, new)}
    identity = rows[("full", "identity")]
    assert identity.ratio == 1.5 and identity.new_other_cpu == 9.8
    assert abs(identity.cpu_ratio - 1.05) < 1e-9
    # A run from before the CPU figures: no CPU ratio, no error.
    assert rows[("full", "orders")].cpu_ratio is None
    assert main([_write(tmp_path / "o.json", old), _write(tmp_path / "n.json", new)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "identity" in x and "full" in x)
    assert line.split()[-3:] == ["1.50", "1.05", "9.8"]
