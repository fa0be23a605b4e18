"""How each step grows with the number of members: `bench/run.py` results side by side.

    python bench/scaling.py bench/results/100k-90d-X.json bench/results/1m-90d-Y.json \\
        bench/results/5m-90d-Z.json
    python bench/scaling.py A.json B.json --markdown      # the table of docs/scaling.md

The files are ordered by members. For each phase (full first run, night, rerun) and
each step: its seconds at every size, and the growth from one size to the next as a
multiple of the growth in members (1.00: linear; below: a fixed cost still shows;
above: worse than linear, e.g. a shuffle that spills), the larger run's seconds first
divided by how much slower its host was (the ``host probe`` line: bench/run.py times one
fixed DuckDB query before each run; the growth columns there give that ratio, 1.00 when a
run has no probe). A step a run did not reach (a
failed or stopped run, ``"running": true``) shows ``-``; the phase's own line says how
far it got. Peak RSS (all processes) per phase closes each block.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

PHASES = {"a_full_first_run": "full", "b_nightly": "night", "c_rerun": "rerun"}


@dataclass(frozen=True)
class Run:
    """One results.json: its size and, per phase, step -> seconds."""

    members: int
    phases: dict[str, dict]
    probe: float | None = None  # bench/run.py host_probe seconds (None: not measured)

    @classmethod
    def load(cls, result: dict) -> Run:
        probe = (result.get("host_probe") or {}).get("seconds")
        return cls(int(result["members"]), {k: result[k] for k in PHASES if k in result}, probe)

    def seconds(self, phase: str, step: str) -> float | None:
        for s in self.phases.get(phase, {}).get("steps", []):
            if s["step"] == step:
                return float(s["seconds"])
        return None

    def total(self, phase: str) -> float | None:
        """The phase's seconds; None unless it finished."""
        p = self.phases.get(phase)
        if not p or p.get("running") or p.get("failed"):
            return None
        return float(p["seconds"])

    def peak_mb(self, phase: str) -> int | None:
        steps = self.phases.get(phase, {}).get("steps", [])
        return max((int(s["peak_rss_mb"]) for s in steps), default=None)

    def status(self, phase: str) -> str:
        p = self.phases.get(phase)
        if p is None:
            return "not run"
        if p.get("failed"):
            return f"failed: {p['failed']}"
        if p.get("running"):
            done = [s["step"] for s in p.get("steps", [])]
            return f"stopped after {done[-1] if done else 'no step'}"
        return "finished"


def growth(
    small: float | None, large: float | None, members_ratio: float, host_ratio: float = 1.0
) -> float | None:
    """``large / small`` over the members' ratio: 1.0 is linear growth. ``host_ratio``:
    the larger run's host probe over the smaller's (its seconds are divided by it)."""
    if small is None or large is None or small <= 0:
        return None
    return large / host_ratio / small / members_ratio


def host_ratio(small: Run, large: Run) -> float:
    """How much slower the larger run's host was (1.0 when either has no probe)."""
    if not small.probe or not large.probe:
        return 1.0
    return large.probe / small.probe


def step_names(runs: list[Run], phase: str) -> list[str]:
    """Every step any run measured in ``phase``, in the order they ran."""
    names: list[str] = []
    for run in runs:
        for s in run.phases.get(phase, {}).get("steps", []):
            if s["step"] not in names:
                names.append(s["step"])
    return names


def rows(runs: list[Run], phase: str) -> list[list[str]]:
    """The table of one phase: step, seconds per size, growth per step between sizes."""

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    out = []
    lines = [(name, [r.seconds(phase, name) for r in runs]) for name in step_names(runs, phase)]
    lines.append(("TOTAL", [r.total(phase) for r in runs]))
    for name, secs in lines:
        grow = [
            growth(
                secs[i],
                secs[i + 1],
                runs[i + 1].members / runs[i].members,
                host_ratio(runs[i], runs[i + 1]),
            )
            for i in range(len(runs) - 1)
        ]
        out.append([name, *(cell(s, ".1f") for s in secs), *(cell(g, ".2f") for g in grow)])
    out.append(
        ["peak RSS MB", *(cell(r.peak_mb(phase), "d") for r in runs), *[""] * (len(runs) - 1)]
    )
    probes = [cell(r.probe, ".2f") for r in runs]
    ratios = [cell(host_ratio(a, b), ".2f") for a, b in zip(runs, runs[1:], strict=False)]
    out.append(["host probe s", *probes, *ratios])
    return out


def _size(members: int) -> str:
    return f"{members // 1_000_000}M" if members % 1_000_000 == 0 else f"{members // 1000}k"


def header(runs: list[Run]) -> list[str]:
    sizes = [_size(r.members) for r in runs]
    return ["step", *(f"{s} s" for s in sizes), *(
        f"{b}/{a} growth" for a, b in zip(sizes, sizes[1:], strict=False))]  # fmt: skip


def render(runs: list[Run], markdown: bool = False) -> str:
    text = []
    for phase, label in PHASES.items():
        if not any(phase in r.phases for r in runs):
            continue
        table = [header(runs), *rows(runs, phase)]
        status = "; ".join(f"{_size(r.members)} {r.status(phase)}" for r in runs)
        if markdown:  # a blank line before the table, or it renders as the caption's text
            text.extend([f"{label} ({status}):", ""])
            text.append("| " + " | ".join(table[0]) + " |")
            text.append("|" + "|".join(["---"] + ["---:"] * (len(table[0]) - 1)) + "|")
            text.extend("| " + " | ".join(row) + " |" for row in table[1:])
        else:
            text.append(f"{label} ({status})")
            widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
            text.extend(
                "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                          for i, (c, w) in enumerate(zip(row, widths, strict=True)))
                for row in table
            )  # fmt: skip
        text.append("")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("results", nargs="+", type=Path, help="bench/run.py results.json files")
    ap.add_argument("--markdown", action="store_true", help="Markdown tables")
    args = ap.parse_args(argv)
    runs = sorted((Run.load(json.loads(p.read_text())) for p in args.results),
                  key=lambda r: r.members)  # fmt: skip
    print(render(runs, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
