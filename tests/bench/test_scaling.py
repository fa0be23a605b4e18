"""bench/scaling.py: per-step growth between bench sizes, stopped runs included."""

from __future__ import annotations

import json

from bench import scaling


def _result(
    members: int, night: list[tuple[str, float]], probe: float | None = None, **phase
) -> dict:
    steps = [{"step": s, "seconds": t, "peak_rss_mb": 1000 + int(t)} for s, t in night]
    return {
        "members": members,
        **({"host_probe": {"seconds": probe}} if probe else {}),
        "b_nightly": {"seconds": sum(t for _, t in night), "steps": steps, **phase},
    }


def test_growth_is_per_step_over_the_members_ratio():
    small = scaling.Run.load(_result(100_000, [("ingest", 2.0), ("identity", 10.0)]))
    large = scaling.Run.load(_result(1_000_000, [("ingest", 20.0), ("identity", 40.0)]))
    table = {row[0]: row for row in scaling.rows([small, large], "b_nightly")}
    assert table["ingest"] == ["ingest", "2.0", "20.0", "1.00"]  # linear
    assert table["identity"] == ["identity", "10.0", "40.0", "0.40"]  # a fixed cost
    assert table["TOTAL"] == ["TOTAL", "12.0", "60.0", "0.50"]
    assert table["peak RSS MB"][1:3] == ["1010", "1040"]


def test_a_stopped_run_shows_the_steps_it_reached(tmp_path, capsys):
    files = []
    for members, night, extra in (
        (1_000_000, [("ingest", 20.0), ("identity", 40.0)], {}),
        (5_000_000, [("ingest", 150.0)], {"running": True}),
    ):
        path = tmp_path / f"{members}.json"
        path.write_text(json.dumps(_result(members, night, **extra)))
        files.append(str(path))
    assert scaling.main(list(reversed(files))) == 0  # sorted by members, not by argument
    out = capsys.readouterr().out
    assert "night (1M finished; 5M stopped after ingest)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["ingest"] == ["ingest", "20.0", "150.0", "1.50"]
    assert lines["identity"] == ["identity", "40.0", "-", "-"]
    assert lines["TOTAL"] == ["TOTAL", "60.0", "-", "-"]  # an unfinished phase has no total


def test_a_slower_host_is_taken_out_of_the_growth():
    small = scaling.Run.load(_result(100_000, [("ingest", 2.0)], probe=1.0))
    large = scaling.Run.load(_result(1_000_000, [("ingest", 40.0)], probe=2.0))
    table = {row[0]: row for row in scaling.rows([small, large], "b_nightly")}
    assert table["ingest"] == ["ingest", "2.0", "40.0", "1.00"]  # 20x the time on a 2x slower host
    assert table["host probe s"] == ["host probe s", "1.00", "2.00", "2.00"]


def test_markdown_tables_stand_apart_from_their_captions():
    small = scaling.Run.load(_result(100_000, [("ingest", 2.0)]))
    large = scaling.Run.load(_result(1_000_000, [("ingest", 20.0)]))
    lines = scaling.render([small, large], markdown=True).splitlines()
    assert lines[:4] == [
        "night (100k finished; 1M finished):",
        "",
        "| step | 100k s | 1M s | 1M/100k growth |",
        "|---|---:|---:|---:|",
    ]
    assert "| ingest | 2.0 | 20.0 | 1.00 |" in lines
