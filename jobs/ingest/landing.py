"""Which landing files a run must take in.

A run for business date D takes every ready day folder dated on or before D
(``_SUCCESS`` present), skipping files already taken in with the same content,
and re-takes any file whose content changed under the same name (a re-send).
Late days are simply folders that became ready after later days were processed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

SUCCESS = "_SUCCESS"


class LandingNotReady(RuntimeError):
    """The folder of the run's own date is missing or has no _SUCCESS."""


@dataclass(frozen=True)
class LandingFile:
    source: str
    business_date: dt.date
    path: Path
    rel_path: str  # relative to the landing root, the file's identity everywhere
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True)
class Known:
    """What the manifest says about a file taken in earlier."""

    size_bytes: int
    mtime_ns: int
    sha256: str


def day_folders(landing: Path, source: str, up_to: dt.date) -> list[tuple[dt.date, Path]]:
    root = landing / source
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        try:
            day = dt.date.fromisoformat(p.name)
        except ValueError:
            continue
        if p.is_dir() and day <= up_to:
            out.append((day, p))
    return sorted(out)


def check_ready(landing: Path, source: str, as_of: dt.date) -> None:
    folder = landing / source / as_of.isoformat()
    if not folder.is_dir():
        raise LandingNotReady(
            f"{folder} does not exist: the {source} export for {as_of} has not arrived"
        )
    if not (folder / SUCCESS).exists():
        raise LandingNotReady(
            f"{folder} has no {SUCCESS}: the {source} export for {as_of} is not complete "
            "(wait for it, or pass --allow-incomplete)"
        )


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def discover(
    landing: Path,
    source: str,
    as_of: dt.date,
    known: dict[str, Known],
    allow_incomplete: bool = False,
) -> tuple[list[LandingFile], list[str]]:
    """Files to take in now, and the day folders still waiting for ``_SUCCESS``.

    A file whose size and mtime match the manifest is unchanged (as rsync
    assumes); otherwise its checksum decides, so a re-sent identical file is a
    no-op and a changed one replaces its earlier rows.
    """
    todo: list[LandingFile] = []
    waiting: list[str] = []
    for day, folder in day_folders(landing, source, as_of):
        if not (folder / SUCCESS).exists() and not allow_incomplete:
            waiting.append(str(folder))
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if not entry.is_file() or entry.name == SUCCESS or entry.name.startswith("."):
                continue
            st = entry.stat()
            rel = f"{source}/{day.isoformat()}/{entry.name}"
            lf = LandingFile(source, day, Path(entry.path), rel, st.st_size, st.st_mtime_ns)
            prev = known.get(rel)
            if prev is not None:
                if prev.size_bytes == lf.size_bytes and prev.mtime_ns == lf.mtime_ns:
                    continue
                if prev.size_bytes == lf.size_bytes and prev.sha256 == sha256_file(lf.path):
                    continue
            todo.append(lf)
    return todo, waiting
