"""One writer per lake: an exclusive lock a dead run cannot keep.

The lock lives at ``<lake>/_cdp/writer.lock`` (found from the lake, so two runs from two
folders, two Airflow workers or two machines see each other). It is re-entrant within a
process, so ``cdp run`` can hold it for the whole pipeline while each step (also run
alone by Airflow) takes it too. The refused run says who holds it.

**Local lake: ``flock``.** The kernel releases the lock when the holding process exits,
however it exits (crash, kill -9, OOM), so there is no stale lock to clean up by hand.
The file records who holds it.

**Object-store lake (``s3://``): a lease object written with conditional requests.**
An object store has no locks, but S3 (and MinIO, Ceph, OSS, R2) can refuse a write
whose precondition fails, atomically:

* *acquire*: ``PUT writer.lock`` with ``If-None-Match: *`` creates the object only if
  there is none. The body says who holds it (host, pid, run id, since) and for how
  long a silent holder keeps it (``lease_seconds``, default 300,
  ``CDP_LOCK_LEASE_SECONDS``).
* *renew*: while the block runs, a background thread rewrites the object every third
  of the lease with ``If-Match: <etag of our last write>``, so a long step (a 30-minute
  MERGE) keeps the lock however long it runs.
* *release*: ``DELETE`` with ``If-Match: <our etag>``: a holder never deletes a lock
  that someone else has taken over.
* *a holder that dies* stops renewing. Once the object is older than its lease, the
  next run takes it over with ``PUT If-Match: <the dead holder's etag>``; if two runs
  try at once, exactly one write matches and the other is refused as busy.
* *clock skew*: the lease's age is judged on the **store's clock only**: the object's
  ``Last-Modified`` against the ``Date`` of the store's own response. No machine
  compares its clock with another's, so skewed clients neither steal a live lease
  nor wait on a dead one.
* *a holder that stalls* longer than its lease (a frozen VM) may find at its next
  renewal that another run took over: the renewal's precondition fails, the lease is
  marked lost and the run fails when its block ends (``LakeLockLost``) instead of
  reporting success. delta-rs (and Sail) commit a table version with a conditional
  create of the next log entry, so each table stays consistent even then; JVM Delta's
  S3 log store assumes a single writer, which is what this lock provides. The lock is
  also what keeps two runs' multi-table steps from interleaving.
* the store must honour conditional writes (AWS S3 since 2024, MinIO, recent Ceph RGW);
  one that ignores ``If-None-Match`` gives no mutual exclusion.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jobs import storage
from jobs.lake_state import lock_file

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 300

_held: dict[str, tuple[Any, int]] = {}  # lock location -> (holder, depth)
_mutex = threading.Lock()


class LakeBusy(RuntimeError):
    """Another run holds the lake's lock."""


class LakeLockLost(RuntimeError):
    """This run's lease on an object-store lake expired and another run took it over."""


def lease_seconds() -> int:
    return int(os.environ.get("CDP_LOCK_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))


def _stamp(run_id: str, **extra: object) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run_id": run_id,
        "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def _who(info: dict) -> str:
    host = f"host {info['host']}, " if info.get("host") else ""
    return f"{host}pid {info['pid']}, run {info['run_id']}, since {info['since']}"


# ---- local: flock -------------------------------------------------------------------------


class FileLock:
    """``flock`` on a local file; released by the kernel when the process ends."""

    def __init__(self, path: Path, lake: str, run_id: str):
        self.path, self.lake, self.run_id = path, lake, run_id
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            try:
                who = _who(json.loads(holder))
            except (ValueError, KeyError):
                who = "another process"
            raise LakeBusy(
                f"another run is writing to {self.lake} ({who}); try again when it has finished"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_stamp(self.run_id)).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


# ---- object store: a lease written with conditional requests ------------------------------


def _s3_client():
    import boto3

    # The endpoint, region and credentials come from the AWS_* variables (jobs.storage).
    return boto3.client("s3")


def _precondition_failed(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    # 412 when the condition fails; 409 when a concurrent conditional write won the race.
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class S3Lease:
    """The lease object described in the module docstring."""

    def __init__(self, uri: str, lake: str, run_id: str, lease_s: int):
        self.bucket, _, self.key = uri.removeprefix("s3://").partition("/")
        self.lake, self.run_id, self.lease_s = lake, run_id, lease_s
        self.client = _s3_client()
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._body = _stamp(run_id, lease_seconds=lease_s, token=uuid.uuid4().hex)

    def _put(self, **condition: str) -> str:
        body = json.dumps(
            self._body | {"renewed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        )
        out = self.client.put_object(
            Bucket=self.bucket, Key=self.key, Body=body.encode(), **condition
        )
        return out["ETag"]

    def _current(self) -> tuple[dict, str, float] | None:
        """(holder, etag, age in seconds by the store's clock), None when there is none."""
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        info = json.loads(got["Body"].read() or b"{}")
        server_now = email.utils.parsedate_to_datetime(
            got["ResponseMetadata"]["HTTPHeaders"]["date"]
        )
        age = (server_now - got["LastModified"]).total_seconds()
        return info, got["ETag"], age

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.etag = self._put(IfNoneMatch="*")
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
            self._take_over_expired()
        self._thread = threading.Thread(target=self._renew_loop, daemon=True, name="cdp-lease")
        self._thread.start()

    def _take_over_expired(self) -> None:
        from botocore.exceptions import ClientError

        current = self._current()
        if current is None:  # released in between: try once more from scratch
            self.etag = self._put(IfNoneMatch="*")
            return
        info, etag, age = current
        lease = float(info.get("lease_seconds", self.lease_s))
        if age <= lease:
            raise LakeBusy(
                f"another run is writing to {self.lake} ({_who(info)}; lease renewed "
                f"{age:.0f}s ago, expires in {lease - age:.0f}s unless renewed); try again "
                "when it has finished"
            )
        try:
            self.etag = self._put(IfMatch=etag)
        except ClientError as exc:
            if _precondition_failed(exc):
                raise LakeBusy(
                    f"another run took over the expired lock of {self.lake} first"
                ) from None
            raise
        log.warning(
            "took over the lock of %s: its holder (%s) stopped renewing it %.0fs ago",
            self.lake,
            _who(info),
            age,
        )

    def _renew_loop(self) -> None:
        from botocore.exceptions import ClientError

        while not self._stop.wait(self.lease_s / 3):
            try:
                self.etag = self._put(IfMatch=self.etag)
            except ClientError as exc:
                if _precondition_failed(exc):
                    self.lost = True
                    log.error("the lock of %s was taken over by another run", self.lake)
                    return
                log.warning("could not renew the lock of %s: %s", self.lake, exc)

    def release(self) -> None:
        from botocore.exceptions import ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
            except ClientError as exc:
                if not _precondition_failed(exc):
                    raise
                self.lost = True
        if self.lost:
            raise LakeLockLost(
                f"this run's lock on {self.lake} expired and another run took it over; "
                "its results may interleave with that run's: rerun the date"
            )


# ---- the lock -----------------------------------------------------------------------------


def _new_lock(lake: Path | str, run_id: str) -> FileLock | S3Lease:
    location = lock_file(lake)
    if storage.is_remote(location):
        return S3Lease(location, str(lake), run_id, lease_seconds())
    return FileLock(Path(location), str(lake), run_id)


@contextlib.contextmanager
def lake_lock(lake: Path | str, run_id: str) -> Iterator[None]:
    """Hold the lake's writer lock for the block (re-entrant within the process)."""
    location = lock_file(lake)
    key = location if storage.is_remote(location) else str(Path(location).resolve())
    with _mutex:
        if key in _held:
            holder, depth = _held[key]
            _held[key] = (holder, depth + 1)
        else:
            holder = _new_lock(lake, run_id)
            holder.acquire()
            _held[key] = (holder, 1)
    try:
        yield
    finally:
        with _mutex:
            holder, depth = _held[key]
            if depth > 1:
                _held[key] = (holder, depth - 1)
            else:
                del _held[key]
                holder.release()
