"""What a step read and wrote, so that a rerun whose inputs did not change can skip it.

While a step runs under :func:`recording`, every :class:`jobs.lake.Lake` read notes the
table and the version it read (-1: no table yet), every write the table it wrote, and a
step writing files outside the lake (the exports) notes them with :func:`note_file`. At
the step's end :meth:`Lineage.summary` turns that into plain JSON, kept in the step's
``meta/runs`` row: the tables read at their versions, the tables written at the version
the step left them at, the files with their content digests, and a digest of the code,
configuration and settings that ran.

:func:`unchanged` decides, before a step runs again for the same date, whether that
summary still holds: same code and settings, every table it read at the same version,
every table it wrote still at the version it left, every file still there with the same
content. A table is identified by its path, so a backfill's scratch copy is never taken
for the real table. Versions only grow (an OPTIMIZE, a RESTORE or a VACUUM adds one), so
anything that touched an input or an output since makes the step run again. Used by
jobs.pipeline for the steps marked ``memo`` (the gold steps and the exports), whose
output depends only on the tables they read, the date and the code.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jobs import storage

MISSING = -1  # the version noted for a table that did not exist when read
EXISTS = "exists"  # the digest noted for a file whose presence, not content, matters


@dataclass
class Lineage:
    """One step's reads (path -> version first read), writes (paths) and files."""

    reads: dict[str, int] = field(default_factory=dict)
    writes: set[str] = field(default_factory=set)
    files: dict[str, str | None] = field(default_factory=dict)  # path -> digest if known

    def summary(self, digest: str, version_of: Callable[[str], int]) -> dict:
        """Plain JSON: inputs at the versions read, outputs at their current versions."""
        return {
            "digest": digest,
            "reads": {p: v for p, v in sorted(self.reads.items()) if p not in self.writes},
            "writes": {p: version_of(p) for p in sorted(self.writes)},
            "files": {p: d or file_digest(p) for p, d in sorted(self.files.items())},
        }


_active: Lineage | None = None


@contextmanager
def recording() -> Iterator[Lineage]:
    """Note what the code inside reads and writes (one step at a time per process)."""
    global _active
    previous, _active = _active, Lineage()
    try:
        yield _active
    finally:
        _active = previous


def note_read(path: str, version: Callable[[], int]) -> None:
    """A read of the table at ``path``; ``version()`` (only called while recording, once
    per table) gives the version read, or :data:`MISSING`."""
    if _active is not None and path not in _active.reads:
        _active.reads[path] = version()


def note_write(path: str) -> None:
    if _active is not None:
        _active.writes.add(path)


def note_file(path: str | Path, sha256: str | None = None) -> None:
    """A file a step wrote or read outside the lake, with its SHA-256 when the caller
    knows it (else it is read at the step's end; :data:`EXISTS`: only its presence is
    checked, for a file later steps add to); checked again before a skip."""
    if _active is not None:
        _active.files[str(path)] = sha256


def file_digest(path: str) -> str | None:
    """SHA-256 of the file's bytes; None when there is no such file."""
    fs, inner = storage.filesystem(path)
    h = hashlib.sha256()
    try:
        with fs.open_input_stream(inner) as stream:
            while chunk := stream.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def table_version(path: str) -> int:
    """The current version of the Delta table at ``path`` (:data:`MISSING`: none)."""
    from deltalake import DeltaTable

    options = storage.delta_storage_options(path)
    if not DeltaTable.is_deltatable(path, storage_options=options):
        return MISSING
    return DeltaTable(path, storage_options=options).version()


_CODE_DIGEST: str | None = None


def _hash_files(h, root: Path, folder: Path, pattern: str) -> None:
    for p in sorted(folder.rglob(pattern)):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root) if p.is_relative_to(root) else p).encode())
            h.update(p.read_bytes())


def code_digest() -> str:
    """The package's source, the schemas and the engine's libraries (what this process
    runs: computed once)."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        from jobs.config import PROJECT_ROOT

        h = hashlib.sha256()
        for folder, pattern in (("jobs", "*.py"), ("schemas", "*"), ("expectations", "*")):
            _hash_files(h, PROJECT_ROOT, PROJECT_ROOT / folder, pattern)
        for package in ("pysail", "pyspark", "delta-spark", "deltalake"):
            try:
                h.update(f"{package}={importlib.metadata.version(package)}".encode())
            except importlib.metadata.PackageNotFoundError:
                h.update(f"{package}=none".encode())
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


def conf_digest() -> str:
    """Every file of the configuration folder (``CDP_CONF_DIR`` or conf/), read now."""
    from jobs.config import CONF_DIR, PROJECT_ROOT

    h = hashlib.sha256()
    _hash_files(h, PROJECT_ROOT, Path(CONF_DIR), "*")
    return h.hexdigest()


def run_digest(settings_json: str) -> str:
    """The code, the configuration and the run's settings in one digest: a change to any
    of them (a deploy, an edited rule) makes every step run again. (The PII key needs
    none: a lake refuses any key but its own, jobs.privacy.pii.)"""
    text = json.dumps([code_digest(), conf_digest(), settings_json])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unchanged(summary: dict, digest: str, version_of: Callable[[str], int] = table_version
              ) -> str | None:  # fmt: skip
    """None when ``summary`` (:meth:`Lineage.summary` of an earlier run) still holds, else
    what changed (the first difference found)."""
    if summary.get("digest") != digest:
        return "code, configuration or settings changed"
    for kind in ("reads", "writes"):
        for path, version in summary.get(kind, {}).items():
            now = version_of(path)
            if now != version:
                return f"{path} at version {now}, not {version}"
    for path, digest_then in summary.get("files", {}).items():
        if digest_then == EXISTS:
            if not storage.exists(path):
                return f"{path} is gone"
        elif digest_then is None or file_digest(path) != digest_then:
            return f"{path} changed or is gone"
    return None
