"""Which landing files a run must take in.

A run for business date D takes every ready day folder dated on or before D
(``_SUCCESS`` present), skipping files already taken in with the same content,
and re-takes any file whose content changed under the same name (a re-send).
Late days are simply folders that became ready after later days were processed.

Only what the contract describes is read: canonical ``YYYY-MM-DD`` day folders
holding plain files, inside the landing root. Anything else under a source root
(a folder named ``20261101``, a stray file, a symbolic link, a path resolving
outside the landing root) is *refused*: never read, reported in the manifest and
in the run summary so the sender can fix it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

SUCCESS = "_SUCCESS"
_DAY_NAME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # ASCII digits: \\d would take ２


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


@dataclass(frozen=True)
class Refused:
    """An entry under a source root that is not read: why, for the manifest."""

    source: str
    rel_path: str  # relative to the landing root
    business_date: dt.date | None  # the day folder it sits in, if any
    reason: str  # symlink | outside_landing | not_a_day_folder | stray_file | not_a_file
    detail: str


@dataclass
class Scan:
    """What a source's landing folder holds for a run (see :func:`scan`)."""

    todo: list[LandingFile] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def parse_day(name: str) -> dt.date | None:
    """The date of a canonical ``YYYY-MM-DD`` folder name, else None.

    ``date.fromisoformat`` alone also takes ``20261101`` and ``2026-W44-7``.
    """
    if not _DAY_NAME.fullmatch(name):
        return None
    try:
        return dt.date.fromisoformat(name)
    except ValueError:  # 2026-13-01, 2026-02-30
        return None


def _link_problem(path: Path, landing_real: Path) -> tuple[str, str] | None:
    """(reason, detail) when ``path`` is a symbolic link or resolves outside the landing root."""
    if path.is_symlink():
        return "symlink", f"symbolic link to {os.readlink(path)}"
    real = path.resolve()
    if not real.is_relative_to(landing_real):
        return "outside_landing", f"resolves to {real}, outside the landing root"
    return None


def day_folders(
    landing: Path, source: str, up_to: dt.date, refused: list[Refused] | None = None
) -> list[tuple[dt.date, Path]]:
    """Canonical day folders of ``source`` dated on or before ``up_to``, sorted.

    Every other entry of the source root (hidden ones aside) is appended to
    ``refused`` when a list is given.
    """
    root = landing / source
    refused = [] if refused is None else refused
    landing_real = landing.resolve()
    problem = _link_problem(root, landing_real) if root.is_symlink() or root.exists() else None
    if problem:
        refused.append(Refused(source, source, None, *problem))
        return []
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue  # hidden: editor and transfer leftovers (.DS_Store, .rsync-tmp)
        rel = f"{source}/{p.name}"
        day = parse_day(p.name)
        problem = _link_problem(p, landing_real)
        if problem:
            refused.append(Refused(source, rel, day, *problem))
        elif not p.is_dir():
            detail = "a file directly under the source folder (files go in YYYY-MM-DD folders)"
            refused.append(Refused(source, rel, None, "stray_file", detail))
        elif day is None:
            detail = f"{p.name!r} is not a YYYY-MM-DD day folder: its files are not read"
            refused.append(Refused(source, rel, None, "not_a_day_folder", detail))
        elif day <= up_to:
            out.append((day, p))
    return out


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


def open_no_follow(path: Path):
    """Open a landing file for reading, refusing (OSError) a symbolic link swapped in late."""
    return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open_no_follow(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _regular_file(entry: os.DirEntry, rel: str, day: dt.date, landing_real: Path,
                  source: str) -> Refused | None:  # fmt: skip
    """Why a day folder entry is not read, or None when it is a plain file inside the landing."""
    problem = _link_problem(Path(entry.path), landing_real)
    if problem:
        return Refused(source, rel, day, *problem)
    if not entry.is_file(follow_symlinks=False):
        return Refused(source, rel, day, "not_a_file", "a folder or special file in a day folder")
    return None


def scan(
    landing: Path,
    source: str,
    as_of: dt.date,
    known: dict[str, Known],
    allow_incomplete: bool = False,
) -> Scan:
    """Files to take in now, day folders still waiting for ``_SUCCESS``, and refused entries.

    A file whose size and mtime match the manifest is unchanged (as rsync
    assumes); otherwise its checksum decides, so a re-sent identical file is a
    no-op and a changed one replaces its earlier rows.
    """
    out = Scan()
    landing_real = landing.resolve()
    for day, folder in day_folders(landing, source, as_of, out.refused):
        if not (folder / SUCCESS).exists() and not allow_incomplete:
            out.waiting.append(str(folder))
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name == SUCCESS or entry.name.startswith("."):
                continue
            rel = f"{source}/{day.isoformat()}/{entry.name}"
            refused = _regular_file(entry, rel, day, landing_real, source)
            if refused:
                out.refused.append(refused)
                continue
            st = entry.stat(follow_symlinks=False)
            lf = LandingFile(source, day, Path(entry.path), rel, st.st_size, st.st_mtime_ns)
            prev = known.get(rel)
            if prev is not None:
                if prev.size_bytes == lf.size_bytes and prev.mtime_ns == lf.mtime_ns:
                    continue
                if prev.size_bytes == lf.size_bytes and prev.sha256 == sha256_file(lf.path):
                    continue
            out.todo.append(lf)
    return out


def discover(
    landing: Path,
    source: str,
    as_of: dt.date,
    known: dict[str, Known],
    allow_incomplete: bool = False,
) -> tuple[list[LandingFile], list[str]]:
    """Files to take in now and the day folders still waiting (see :func:`scan`)."""
    found = scan(landing, source, as_of, known, allow_incomplete)
    return found.todo, found.waiting
