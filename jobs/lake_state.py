"""What a lake needs to continue, kept in the lake (CONTRACT section 2).

Everything a run needs beyond its inputs and configuration is found from the lake
root, never from the working directory, so the same command from another folder,
another Airflow worker or another machine continues the same lake:

* ``<lake>/_cdp/pii_key.json``: the fingerprint of the PII hashing key the lake was
  hashed with. A run whose key has another fingerprint is refused with one line that
  names both; a key is never generated for a lake that already holds tables.
* ``<lake>/_cdp/writer.lock``: the writer lock (jobs.lock: ``flock`` on a local lake, a
  lease object written with conditional requests on an object store).
* ``<lake>/_cdp/staging/<run_id>/<source>``: files a run's ingest parsed and has not
  yet written (removed when the run ends; a later run or ``cdp forget`` scrubs what a
  dead run left).
* ``<lake>/_cdp/scratch/<step>/<run_id>``: a step's intermediate tables.

Incremental state (identity, silver orders) lives in ``meta/`` Delta tables.
The ``_cdp`` folder holds no Delta table, so table discovery (``*/*/_delta_log``)
never lists it.

The lake may be a local folder or an object-store URI (``s3://bucket/prefix``): the
locations below are text joined with ``/`` and read and written through
jobs.storage, so both work the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from jobs import storage

STATE_DIR = "_cdp"
FINGERPRINT_FILE = "pii_key.json"


class PiiKeyMismatch(RuntimeError):
    """The PII key given to a run is not the key the lake was hashed with."""


def state_dir(lake: str | Path) -> str:
    return storage.join(lake, STATE_DIR)


def staging_dir(lake: str | Path, run_id: str) -> str:
    """Where run ``run_id`` stages parsed landing files before they reach bronze."""
    return storage.join(state_dir(lake), "staging", run_id)


def staging_root(lake: str | Path) -> str:
    return storage.join(state_dir(lake), "staging")


def scratch_dir(lake: str | Path, step: str, run_id: str) -> str:
    """A step's intermediate tables for one run (on the lake's storage, so a cluster's
    executors and driver see the same files)."""
    return storage.join(state_dir(lake), "scratch", step, run_id)


def lock_file(lake: str | Path) -> str:
    return storage.join(state_dir(lake), "writer.lock")


def key_fingerprint(key: bytes) -> str:
    """A public fingerprint of the PII key: HMAC of a fixed label, first 16 hex digits.

    It identifies the key without revealing it (the HMAC is one-way in the key)."""
    return hmac.new(key, b"cdp-lake-pii-key-fingerprint", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class RecordedKey:
    fingerprint: str
    recorded_at: str
    source: str


def recorded_key(lake: str | Path) -> RecordedKey | None:
    """The fingerprint the lake records, or None for a lake that records none yet."""
    text = storage.read_text(storage.join(state_dir(lake), FINGERPRINT_FILE))
    if text is None:
        return None
    data = json.loads(text)
    return RecordedKey(data["fingerprint"], data.get("recorded_at", "?"), data.get("source", "?"))


def record_key(lake: str | Path, key: bytes, source: str) -> RecordedKey:
    """Write the key's fingerprint into the lake (atomically: local write-then-rename, or
    one object PUT)."""
    entry = RecordedKey(
        key_fingerprint(key), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), source
    )
    target = storage.join(state_dir(lake), FINGERPRINT_FILE)
    storage.write_text(target, json.dumps(entry.__dict__, indent=1))
    return entry


def lake_has_tables(lake: str | Path) -> bool:
    """Whether the lake already holds a Delta table (an existing lake)."""
    return bool(storage.delta_tables(lake))


def check_key(lake: str | Path, key: bytes, source: str) -> None:
    """Refuse ``key`` unless it is the lake's; record it for a lake that records none.

    A lake written before fingerprints were kept adopts the key it is next run with
    (that run's hashes must equal the existing ones, which the caller's key decides).
    """
    recorded = recorded_key(lake)
    if recorded is None:
        record_key(lake, key, source)
        return
    given = key_fingerprint(key)
    if given != recorded.fingerprint:
        raise PiiKeyMismatch(
            f"the PII key from {source} (fingerprint {given}) is not the key the lake {lake} "
            f"was hashed with (fingerprint {recorded.fingerprint}, recorded {recorded.recorded_at}"
            f" from {recorded.source}); give the lake's key (CDP_PII_KEY, privacy.key_file or "
            "the Airflow connection) - refusing to re-key the lake"
        )
