"""One writer per lake: an exclusive lock a dead run cannot keep.

The lock is an ``flock`` on ``<lake>/_cdp/writer.lock`` (found from the lake, so two
runs from two folders or two Airflow workers on one machine see each other): the kernel releases
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
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from jobs.lake_state import lock_file

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth)
_mutex = threading.Lock()


class LakeBusy(RuntimeError):
    """Another run holds the lake's lock."""


@contextlib.contextmanager
def lake_lock(lake: Path, run_id: str) -> Iterator[None]:
    """Hold the lake's writer lock for the block (re-entrant within the process)."""
    path = lock_file(lake)
    key = str(path.resolve())
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
