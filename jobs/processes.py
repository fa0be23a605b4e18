"""Process and process-group liveness and stopping, without heavy imports.

Used by jobs.spark_cluster (its daemons' pid files) and by jobs.spark_watchdog, a small
detached process that must stay light.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def _answers(send: Callable[[int, int], None], ident: int) -> bool:
    """True when signal 0 reaches ``ident`` (``os.kill``: a pid, ``os.killpg``: a group)."""
    try:
        send(ident, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    if not _answers(os.kill, pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux), or it just ended
        return _answers(os.kill, pid)


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` runs."""
    return _answers(os.killpg, pgid)


def kill_group(pgid: int, grace_s: float = 20) -> None:
    """SIGTERM the process group ``pgid`` (a JVM and its children), SIGKILL after grace."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and group_alive(pgid):
        try:  # reap the leader when it is our child
            os.waitpid(pgid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(pgid, 0)
    except ChildProcessError:
        pass
