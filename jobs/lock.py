"""One writer per lake: an exclusive lock a dead run cannot keep.

The lock is an ``flock`` on a file under ``<work>/locks``: the kernel releases
it when the holding process exits, however it exits (crash, kill -9, OOM), so
there is no stale lock to clean up by hand. The file records who holds it so the
refused run can say so. It is re-entrant within a process, so `cdp run` can
hold it for the whole pipeline while each step (also run alone by Airflow)
takes it too. (A lake on object storage shared by several machines needs an
external lock instead; one machine or one Airflow pool is the supported case.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth)
_mutex = threading.Lock()


class LakeBusy(RuntimeError):
    """Another run holds the lake's lock."""


def lock_path(work: Path, lake: Path) -> Path:
    digest = hashlib.sha256(str(lake).encode()).hexdigest()[:16]
    return work / "locks" / f"lake-{digest}.lock"


@contextlib.contextmanager
def lake_lock(work: Path, lake: Path, run_id: str) -> Iterator[None]:
    path = lock_path(work, lake)
    key = str(path)
    with _mutex:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                os.close(fd)
                try:
                    info = json.loads(holder)
                    who = f"pid {info['pid']}, run {info['run_id']}, since {info['since']}"
                except (ValueError, KeyError):
                    who = "another process"
                raise LakeBusy(
                    f"another run is writing to {lake} ({who}); try again when it has finished"
                ) from None
            os.ftruncate(fd, 0)
            stamp = {
                "pid": os.getpid(),
                "run_id": run_id,
                "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            os.pwrite(fd, json.dumps(stamp).encode(), 0)
            _held[key] = (fd, 1)
    try:
        yield
    finally:
        with _mutex:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
            else:
                del _held[key]
                os.close(fd)  # closing the descriptor releases the flock
