"""Which business dates of a bronze table changed since an earlier run, from the Delta
log alone (no data read). Used by the incremental `identity` and `orders` steps.

A date's digest is its row count and first/last ``_ingested_at`` from the log's file
statistics: ingest stamps every row of a new or re-sent file with its run's time and an
erasure removes rows, so those change it, while a compaction (files rewritten, rows
not) does not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from jobs.lake import Lake

ALL_DATES = "*"  # the key of files without a business date: any change touches every date


@dataclass
class TableSnapshot:
    """One bronze table as of now: its Delta version, and per business date (<= as_of)
    a digest of its data files and their row count (from the Delta log's stats)."""

    version: int
    digests: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def table_snapshot(lake: Lake, name: str, as_of: dt.date) -> TableSnapshot:
    """Digest of the data files of every business date <= as_of, from the Delta log."""
    if not lake.exists(name):
        return TableSnapshot(version=-1)
    t = lake.delta_table(name)
    actions = t.get_add_actions(flatten=True)
    cols = set(actions.column_names)
    paths = actions.column("path").to_pylist()
    n = len(paths)
    counts = actions.column("num_records").to_pylist() if "num_records" in cols else [None] * n
    if "partition._business_date" in cols:
        dates = actions.column("partition._business_date").to_pylist()
    else:
        dates = [None] * n
    lo = actions.column("min._ingested_at").to_pylist() if "min._ingested_at" in cols else None
    hi = actions.column("max._ingested_at").to_pylist() if "max._ingested_at" in cols else None
    files: dict[str, list[tuple]] = {}
    for i, (p, d, c) in enumerate(zip(paths, dates, counts, strict=True)):
        if isinstance(d, str):
            d = dt.date.fromisoformat(d)
        if d is not None and d > as_of:
            continue
        key = ALL_DATES if d is None else d.isoformat()
        files.setdefault(key, []).append((p, c, lo[i] if lo else None, hi[i] if hi else None))
    rows = {k: sum(int(f[1] or 0) for f in v) for k, v in files.items()}
    return TableSnapshot(
        version=t.version(), digests={k: _digest(v) for k, v in files.items()}, rows=rows
    )


def _digest(files: list[tuple]) -> str:
    """What identifies a date's rows: their count and the first and last ingest time
    (ingest stamps every row of a new or re-sent file with its own run's time, and an
    erasure removes rows), so a compaction, which rewrites files but not rows, touches
    nothing. Without those statistics, the list of files itself."""
    if all(c is not None and a is not None and b is not None for _, c, a, b in files):
        n = sum(int(c) for _, c, _, _ in files)
        first = min(a for _, _, a, _ in files).isoformat()
        last = max(b for _, _, _, b in files).isoformat()
        text = f"{n}|{first}|{last}"
    else:
        text = "\n".join(sorted(p for p, _, _, _ in files))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def touched_dates(prev: TableSnapshot, cur: TableSnapshot) -> list[dt.date] | None:
    """Business dates whose files differ between two snapshots; None: read every date."""
    a, b = prev.digests, cur.digests
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if ALL_DATES in keys:
        return None
    return [dt.date.fromisoformat(k) for k in keys]


def dates_in(col: str, dates: list[dt.date]) -> str:
    """A SQL predicate: ``col`` is one of ``dates`` (for MERGE and replaceWhere)."""
    listed = ", ".join(f"DATE'{x.isoformat()}'" for x in sorted(set(dates)))
    return f"{col} IN ({listed})"
