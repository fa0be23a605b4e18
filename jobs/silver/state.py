"""What the last `orders` run saw, so that a night reads only what changed since.

State: ``meta/silver_orders_state``, one row written last by the step (after the three
silver tables), so a crash before it only means the same work is done again:

* ``as_of_date``: the date of the last successful run;
* ``detail`` (JSON): per bronze table (pos_lines, web_events) the Delta version read and a
  digest of every business date <= as_of (row count and first/last ``_ingested_at`` from
  the Delta log's file statistics, no data read; see :func:`_digest`), the version of silver/member_xref used for the members, and a fingerprint
  of the PII key (phone keys are HMACs: a new key means new keys everywhere).

A business date whose digest differs (a new or late day, a re-sent file replacing rows,
an erasure; not a compaction) is *touched*: its rows are read again, now and as of the
old version (time travel) to find what disappeared. Other dates are not read.
The run-specific values live in ``detail`` and ``run_id`` (they differ between two runs
of the same data, as Delta versions and file names do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

from jobs.lake import Lake

STATE_TABLE = "meta/silver_orders_state"
POS = "bronze/pos_lines"
WEB = "bronze/web_events"
XREF = "silver/member_xref"
ALL_DATES = "*"
FORMAT = 1  # bump when the silver tables' layout changes: the next run rebuilds in full


@dataclass
class TableSnapshot:
    """One bronze table as of now: its Delta version, and per business date (<= as_of)
    a digest of its data files and their row count (from the Delta log's stats)."""

    version: int
    digests: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)


def table_snapshot(lake: Lake, name: str, as_of: dt.date) -> TableSnapshot:
    """Digest of the data files of every business date <= as_of, from the Delta log."""
    from deltalake import DeltaTable

    if not lake.exists(name):
        return TableSnapshot(version=-1)
    t = DeltaTable(lake.path(name))
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


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"silver-orders:" + key).hexdigest()[:16]


@dataclass
class SilverState:
    as_of: dt.date
    pos: TableSnapshot
    web: TableSnapshot
    xref_version: int
    fingerprint: str
    format: int = FORMAT


def load_state(lake: Lake) -> SilverState | None:
    """The last run's state; None when there is none (or it cannot be read)."""
    if not lake.exists(STATE_TABLE):
        return None
    rows = lake.read(STATE_TABLE).collect()
    if len(rows) != 1:
        return None
    r = rows[0]
    try:
        d = json.loads(r["detail"])
        return SilverState(
            as_of=r["as_of_date"],
            pos=TableSnapshot(**d["pos"]),
            web=TableSnapshot(**d["web"]),
            xref_version=int(d["xref_version"]),
            fingerprint=d["fingerprint"],
            format=int(d.get("format", 0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def save_state(lake: Lake, st: SilverState, run_id: str) -> None:
    """One row, one commit."""
    detail = {
        "pos": st.pos.__dict__,
        "web": st.web.__dict__,
        "xref_version": st.xref_version,
        "fingerprint": st.fingerprint,
        "format": st.format,
    }
    df = lake.spark.createDataFrame(
        [(st.as_of, run_id, json.dumps(detail, sort_keys=True))],
        "as_of_date date, run_id string, detail string",
    )
    lake.overwrite(df, STATE_TABLE, conform_schema=False)
