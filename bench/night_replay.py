"""A copy of a lake as it stood before a night's steps, to run them again and time them.

    python bench/night_replay.py LAKE COPY --at 2026-12-03T16:15:43.5+00:00
    cdp run --date D --landing ... --lake COPY --exports /tmp/x --steps identity

After a bench run (bench/run.py: full run, then a night) the lake holds the night's
results. The copy keeps bronze, quarantine and the ingest manifest as they are (the
night's data stays ingested) and puts every other Delta table back at its last version
committed at or before ``--at`` (e.g. the full run's last ``meta/runs`` commit): its
``_delta_log`` is cut there, so the table's version is the one the steps' state recorded
(a RESTORE would add a version, and the identity step would then recompute in full). A
table created after ``--at`` is left out. Data files are hard links (no copy, never
written to); each table's log is a copy of its own.

With ``--ingest`` bronze, quarantine and the ingest manifest are cut at ``--at`` too, so
the night's files are new again to ``--steps ingest_pos,ingest_web,...``.

How docs/scaling.md's "derived columns computed again for each reader" were found: the
night's identity step run again on such a copy with one intermediate written at a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from deltalake import DeltaTable

# Left as they are: the night's ingested data and what the ingest wrote about it.
KEPT = ("bronze/", "quarantine/", "meta/ingest_manifest", "meta/quality_results", "_cdp")
# --ingest: only the lake's own state is kept; every table is cut, bronze included.
INGEST_KEPT = ("_cdp",)


def delta_tables(root: Path) -> Iterator[str]:
    """The Delta tables under ``root``, as paths relative to it."""
    for folder, subfolders, _ in os.walk(root):
        if "_delta_log" in subfolders:
            yield os.path.relpath(folder, root)
            subfolders[:] = []


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` a tree of hard links to ``src``'s files, each ``_delta_log`` a real copy."""
    for folder, subfolders, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        if rel.name == "_delta_log":
            subfolders[:] = []
            shutil.copytree(folder, dst / rel, dirs_exist_ok=True)
            continue
        for name in files:
            os.link(Path(folder) / name, dst / rel / name)


def cut_log(table: Path, version: int) -> None:
    """Drop ``table``'s commits and checkpoints after ``version``."""
    log = table / "_delta_log"
    for entry in log.iterdir():
        head = entry.name.split(".")[0]
        if head.isdigit() and int(head) > version:
            entry.unlink()
    last = log / "_last_checkpoint"
    if last.exists() and json.loads(last.read_text())["version"] > version:
        last.unlink()


def replay_copy(
    src: Path, dst: Path, at: dt.datetime, kept: tuple[str, ...] = KEPT
) -> dict[str, int | None]:
    """Make ``dst`` (replaced) from ``src`` as described above; returns each cut table's
    version in the copy (None: left out, created after ``at``). ``kept``: the tables left
    as they are (with ``INGEST_KEPT`` bronze is cut too, to replay the night's ingest)."""
    shutil.rmtree(dst, ignore_errors=True)
    _link_tree(src, dst)
    at_ms = at.timestamp() * 1000
    versions: dict[str, int | None] = {}
    for name in sorted(delta_tables(dst)):
        if name.startswith(kept):
            continue
        path = dst / name
        table = DeltaTable(str(path))
        before = [h["version"] for h in table.history() if h["timestamp"] <= at_ms]
        if not before:
            shutil.rmtree(path)
            versions[name] = None
            continue
        if max(before) != table.version():
            cut_log(path, max(before))
        versions[name] = max(before)
    shutil.rmtree(dst / "_cdp" / "scratch", ignore_errors=True)
    return versions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lake", type=Path)
    parser.add_argument("copy", type=Path)
    parser.add_argument("--at", required=True, type=dt.datetime.fromisoformat,
                        help="ISO time with its zone: keep what was committed by then")  # fmt: skip
    parser.add_argument("--ingest", action="store_true",
                        help="cut bronze, quarantine and the ingest manifest too (replay ingest)")  # fmt: skip
    args = parser.parse_args(argv)
    kept = INGEST_KEPT if args.ingest else KEPT
    for name, version in replay_copy(args.lake, args.copy, args.at, kept).items():
        print(f"{name}: {'left out' if version is None else f'v{version}'}")


if __name__ == "__main__":
    main()
