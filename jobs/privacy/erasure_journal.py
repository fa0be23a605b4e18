"""The durable record of an erasure in progress, so a killed `cdp forget` can be finished.

One JSON file per request under ``<lake>/_cdp/erasure_requests/<request_id>.json`` (mode
0600, written atomically: temp file, fsync, rename). It is written before the first
change to the lake and removed once the receipt is written. It holds:

* the request: ``request_id``, ``request_key`` (HMAC of the normalised arguments, so
  the same command run again finds it), the argument kinds, the time asked;
* the person: member ids and every identifier found when the request was resolved
  (raw values: the quarantine scrub needs them, and after a partial delete they can no
  longer be found again). This is the one place besides bronze, quarantine and
  ``restricted/`` that holds them, and only while the request is pending;
* progress: the phases done (``suppress``, ``erase``, ``recompute``, ``vacuum``), the
  Delta version of every table when the request was recorded, the rows removed per
  table and export file, and the attempts (run id, start, end, outcome);
* ``in_flight``: the one write about to be committed (table and its version before, or
  export file and its SHA-256 before) with the rows it removes. An attempt killed right
  after that commit is credited with those rows when the next attempt sees the table
  (or file) changed; otherwise the next attempt removes and counts them itself. So the
  counts on the receipt are exact across attempts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from pathlib import Path

PHASES = ("suppress", "erase", "recompute", "vacuum")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass
class ErasureRequest:
    """One pending erasure (see module docstring); ``path`` is where it is kept."""

    path: Path
    request_id: str
    request_key: str
    requested_by: list[str]
    requested_at: str
    member_ids: list[str]
    ids: dict[str, list[str]]
    phone_hashes: list[str]
    versions_before: dict[str, int]
    done: list[str] = dataclasses.field(default_factory=list)
    rows_removed: dict[str, int] = dataclasses.field(default_factory=dict)
    export_rows_removed: dict[str, int] = dataclasses.field(default_factory=dict)
    attempts: list[dict] = dataclasses.field(default_factory=list)
    in_flight: dict | None = None
    staging_folders_removed: int = 0
    export_temp_folders_removed: int = 0
    recomputed: dict | None = None
    tables_vacuumed: list[str] = dataclasses.field(default_factory=list)

    # ---- persistence ------------------------------------------------------------------

    def save(self) -> None:
        """Write the record atomically and durably (readable by the owner only)."""
        doc = {k: v for k, v in dataclasses.asdict(self).items() if k != "path"}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, ensure_ascii=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    # ---- progress -----------------------------------------------------------------------

    def start_attempt(self, run_id: str) -> dict:
        """Record a new attempt; an earlier one still marked running was killed."""
        for a in self.attempts:
            if a["outcome"] == "running":
                a["outcome"] = "interrupted"
        attempt = {
            "run_id": run_id,
            "started_at": _now(),
            "ended_at": None,
            "outcome": "running",
            "rows_removed": 0,
            "export_rows_removed": 0,
            "phases": [],
        }
        self.attempts.append(attempt)
        self.save()
        return attempt

    def phase_done(self, phase: str) -> None:
        self.done.append(phase)
        self.attempts[-1]["phases"].append(phase)
        self.save()

    def before_write(self, kind: str, name: str, rows: int, token: str | int | None) -> None:
        """About to commit a write removing ``rows`` from table/export file ``name``."""
        self.in_flight = {"kind": kind, "name": name, "rows": rows, "token": token}
        self.save()

    def after_write(self) -> None:
        """The in-flight write committed: count its rows for the current attempt."""
        assert self.in_flight is not None
        self._credit(self.in_flight, self.attempts[-1])
        self.in_flight = None
        self.save()

    def settle_in_flight(self, committed: bool) -> None:
        """At the start of an attempt: a write the killed attempt was making either
        committed (its rows count for that attempt) or not (this attempt redoes it)."""
        if self.in_flight is None:
            return
        if committed:
            killed = [a for a in self.attempts if a["outcome"] == "interrupted"]
            self._credit(self.in_flight, killed[-1] if killed else self.attempts[-1])
        self.in_flight = None
        self.save()

    def _credit(self, write: dict, attempt: dict) -> None:
        name, rows = write["name"], int(write["rows"])
        if write["kind"] == "table":
            self.rows_removed[name] = self.rows_removed.get(name, 0) + rows
            attempt["rows_removed"] += rows
        else:
            self.export_rows_removed[name] = self.export_rows_removed.get(name, 0) + rows
            attempt["export_rows_removed"] += rows

    def finish_attempt(self) -> None:
        self.attempts[-1]["outcome"] = "completed"
        self.attempts[-1]["ended_at"] = _now()
        self.save()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def requests_dir(work: Path) -> Path:
    return Path(work) / "erasure_requests"


def load(path: Path) -> ErasureRequest:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return ErasureRequest(path=path, **doc)


def pending(work: Path) -> list[ErasureRequest]:
    """Requests recorded and not finished, oldest first."""
    folder = requests_dir(work)
    if not folder.is_dir():
        return []
    found = [load(p) for p in folder.glob("erase-*.json")]
    return sorted(found, key=lambda r: (r.requested_at, r.request_id))
