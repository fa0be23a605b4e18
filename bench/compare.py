"""Compare two `bench/run.py` results step by step, and flag what got slower.

    python bench/compare.py bench/results/100k-90d.json bench/out/results.json
    python bench/compare.py OLD.json NEW.json --max-ratio 1.5 --min-seconds 5

For each phase (full first run, night, rerun) and each step: the baseline's seconds, the
new ones and their ratio. A step is flagged as a regression when it takes more than
``--max-ratio`` times the baseline *and* at least ``--min-seconds`` more (small steps
are noise on a shared machine); the exit status is 1 when any step is flagged, so a
script or a scheduled job can stop on it. Both runs should come from the same machine
at a similar load (each result file says its own); ratios, not seconds, are what carry
over between machines. Where both runs counted CPU seconds (``cpu_seconds``, results
since 2026-12-07), the CPU ratio is shown too, and the new run's ``other``: the CPU
seconds the rest of the host used while the step ran (a step whose wall time grew with
its CPU time unchanged and ``other`` high waited for a busy host, not on slower code). (Identity took 15x its earlier time for a week in 2026-11
before anyone ran the two files side by side.)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

PHASES = {"a_full_first_run": "full", "b_nightly": "night", "c_rerun": "rerun"}


@dataclass(frozen=True)
class StepTime:
    """One step of one phase in both runs (None: the step is missing from that run)."""

    phase: str
    step: str
    baseline: float | None
    new: float | None
    baseline_cpu: float | None = None
    new_cpu: float | None = None
    new_other_cpu: float | None = None

    @property
    def cpu_ratio(self) -> float | None:
        if self.baseline_cpu is None or self.new_cpu is None or self.baseline_cpu <= 0:
            return None
        return self.new_cpu / self.baseline_cpu

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.new is None or self.baseline <= 0:
            return None
        return self.new / self.baseline

    def regressed(self, max_ratio: float, min_seconds: float) -> bool:
        ratio = self.ratio
        if ratio is None or self.baseline is None or self.new is None:
            return False
        return ratio > max_ratio and self.new - self.baseline >= min_seconds


def _steps(result: dict, phase: str, key: str = "seconds") -> dict[str, float]:
    """``key`` (seconds, cpu_seconds, other_cpu_seconds) per step of one phase, with the
    phase's total as ``(total)``; steps without it are left out."""
    run = result.get(phase) or {}
    out = {s["step"]: float(s[key]) for s in run.get("steps", []) if key in s}
    if key in run:
        out["(total)"] = float(run[key])
    return out


def compare(baseline: dict, new: dict) -> list[StepTime]:
    """Every step of every phase found in either run, in the new run's order."""
    rows = []
    for phase, label in PHASES.items():
        old, cur = _steps(baseline, phase), _steps(new, phase)
        old_cpu, cur_cpu = _steps(baseline, phase, "cpu_seconds"), _steps(new, phase, "cpu_seconds")
        other = _steps(new, phase, "other_cpu_seconds")
        for step in [*cur, *(s for s in old if s not in cur)]:
            rows.append(StepTime(label, step, old.get(step), cur.get(step),
                                 old_cpu.get(step), cur_cpu.get(step), other.get(step)))  # fmt: skip
    return rows


def render(rows: list[StepTime], max_ratio: float, min_seconds: float) -> str:
    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{'phase':<6} {'step':<16} {'baseline s':>10} {'new s':>8} {'ratio':>6} "
             f"{'cpu ratio':>9} {'other cpu s':>11}"]  # fmt: skip
    for r in rows:
        flag = "  REGRESSION" if r.regressed(max_ratio, min_seconds) else ""
        lines.append(
            f"{r.phase:<6} {r.step:<16} {secs(r.baseline):>10} {secs(r.new):>8} "
            f"{times(r.ratio):>6} {times(r.cpu_ratio):>9} {secs(r.new_other_cpu):>11}{flag}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("baseline", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--max-ratio", type=float, default=1.5)
    ap.add_argument("--min-seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    baseline, new = (json.loads(p.read_text(encoding="utf-8")) for p in (args.baseline, args.new))
    for name, result in (("baseline", baseline), ("new", new)):
        print(f"{name}: {result.get('members')} members x {result.get('days')} days")
    rows = compare(baseline, new)
    print(render(rows, args.max_ratio, args.min_seconds))
    slower = [r for r in rows if r.regressed(args.max_ratio, args.min_seconds)]
    if slower:
        names = ", ".join(f"{r.phase}/{r.step} {r.ratio:.1f}x" for r in slower)
        print(f"{len(slower)} step(s) slower than {args.max_ratio}x the baseline: {names}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
