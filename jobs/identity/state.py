"""Incremental identity resolution: what the previous run saw, and the per-date parts of
the graph built from the big bronze tables.

State (all Delta tables, written by the identity step only):

* ``meta/identity_state`` (one row): the as_of date of the last successful run, a
  digest of every bronze partition it read (per table and business date, from the
  Delta log: jobs.bronze_changes), a fingerprint of the identity configuration and
  PII key, and the versions of silver/member_xref and silver/identity_edges it left. A run compares the
  bronze Delta logs with these digests: a business date whose rows changed (a new
  day, a re-sent file replacing rows, an erasure; not a compaction) is *touched* and its
  parts are recomputed from bronze; every other date is not read again.
* ``restricted/identity_pos_orders`` (one business date x order): card, phone (raw:
  hence restricted/) and phone key of each order, see graph.pos_order_parts.
* ``meta/identity_web_links`` (one business date x device x account) and
  ``meta/identity_web_ids`` (one business date x web identity).

The part tables are partitioned by ``_business_date`` and rewritten with replaceWhere
for the touched dates only. CRM is small and re-read in full every night.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.bronze_changes import ALL_DATES, table_snapshot
from jobs.lake import Lake, read_state_row, write_retrying, write_state_row

STATE_TABLE = "meta/identity_state"
POS_PARTS = "restricted/identity_pos_orders"
LINK_PARTS = "meta/identity_web_links"
WEB_ID_PARTS = "meta/identity_web_ids"
PART_TABLES = (POS_PARTS, LINK_PARTS, WEB_ID_PARTS)
BRONZE = ("bronze/crm_members", "bronze/pos_lines", "bronze/web_events")

Snapshot = dict[str, dict[str, str]]  # table -> business date -> digest of its rows


def bronze_snapshot(lake: Lake, as_of: dt.date) -> Snapshot:
    """Per bronze table, a digest of every business date <= as_of (jobs.bronze_changes:
    from the Delta log only; a compaction changes no digest)."""
    return {name: table_snapshot(lake, name, as_of).digests for name in BRONZE}


def touched_dates(prev: Snapshot, cur: Snapshot, table: str) -> list[str] | None:
    """Business dates of ``table`` whose files differ between two snapshots (added,
    replaced or gone); None when every date must be read again."""
    a, b = prev.get(table, {}), cur.get(table, {})
    dates = sorted(d for d in set(a) | set(b) if a.get(d) != b.get(d))
    return None if ALL_DATES in dates else dates


# Raised when a change to the rules' code (not to conf/identity.yaml) changes what
# identity computes, e.g. which pairs a blocking key makes candidates: a state written
# by the older code then no longer matches, and the next run recomputes fully instead of
# keeping yesterday's edges between the records a night does not touch.
# 2: name-token blocking keys tagged without their side (first / last token).
RULES_VERSION = 2


def conf_fingerprint(conf_json: str, key: bytes) -> str:
    """Changes when the identity configuration (bar the breaker), the PII key or
    :data:`RULES_VERSION` changes."""
    h = hashlib.sha256(f"rules {RULES_VERSION}\n".encode())
    h.update(conf_json.encode("utf-8"))
    h.update(hashlib.sha256(key).digest())
    return h.hexdigest()


@dataclass
class IdentityState:
    as_of: dt.date
    run_id: str
    fingerprint: str
    snapshot: Snapshot
    xref_version: int
    edges_version: int
    figures: dict
    # Versions of the part tables this run left: a run that failed after rewriting
    # parts (breaker, crash) makes the next one recompute in full.
    parts_versions: dict[str, int]
    # Versions of the chain-check state (jobs.identity.chains) this run left; empty when
    # it wrote none. Other versions make the next run check every component again.
    chain_versions: dict[str, int] = field(default_factory=dict)
    # Versions of the second pass's state (jobs.identity.second) this run left.
    second_versions: dict[str, int] = field(default_factory=dict)


def load_state(lake: Lake) -> IdentityState | None:
    """The last run's state; None when there is none or it cannot be read (the caller
    recomputes in full)."""
    row = read_state_row(lake, STATE_TABLE)
    if row is None:
        return None
    as_of, run_id, detail = row
    try:
        return IdentityState(
            as_of=as_of,
            run_id=run_id,
            fingerprint=detail["fingerprint"],
            snapshot=detail["snapshot"],
            xref_version=int(detail["xref_version"]),
            edges_version=int(detail["edges_version"]),
            figures=detail["figures"],
            parts_versions={k: int(v) for k, v in detail["parts_versions"].items()},
            chain_versions={k: int(v) for k, v in detail.get("chain_versions", {}).items()},
            second_versions={k: int(v) for k, v in detail.get("second_versions", {}).items()},
        )
    except (KeyError, TypeError, ValueError):
        return None


def save_state(lake: Lake, st: IdentityState) -> None:
    """One row, one commit: written last, after every silver table of the run.

    Everything but the date sits in ``detail`` (JSON): file names, versions and
    timings differ between two runs over the same data by design.
    """
    detail = {
        "fingerprint": st.fingerprint,
        "snapshot": st.snapshot,
        "xref_version": st.xref_version,
        "edges_version": st.edges_version,
        "figures": st.figures,
        "parts_versions": st.parts_versions,
        "chain_versions": st.chain_versions,
        "second_versions": st.second_versions,
    }
    write_state_row(lake, STATE_TABLE, st.as_of, st.run_id, detail)


def _date_list(dates: list[str]) -> str:
    return ", ".join(f"DATE'{d}'" for d in dates)


def write_parts(lake: Lake, df: DataFrame, name: str, dates: list[str] | None) -> None:
    """Replace the parts of ``dates`` (all of them when None) in one commit."""
    if dates is not None and not dates and lake.exists(name):
        return

    def save(rows: DataFrame) -> None:
        w = rows.write.format("delta").mode("overwrite")
        if dates is None or not lake.exists(name):
            w = w.option("overwriteSchema", "true").partitionBy("_business_date")
        else:
            w = w.option("replaceWhere", f"_business_date IN ({_date_list(dates)})")
        w.save(lake.path(name))

    write_retrying(df, save)


def bronze_for(lake: Lake, name: str, as_of: dt.date, dates: list[str] | None) -> DataFrame:
    """Bronze rows dated <= as_of, only of ``dates`` when given (partition pruning)."""
    df = lake.read(name).filter(F.col("_business_date") <= F.lit(as_of))
    if dates is not None:
        df = df.filter(F.col("_business_date").isin(*[dt.date.fromisoformat(d) for d in dates]))
    return df


def xref_as_written(lake: Lake) -> bool:
    """Whether silver/member_xref is at the version the identity step last left it: one
    row per (source, source_key) then holds by construction, so a reader need not drop
    exact copies again. False without the step's state or after another commit."""
    st = load_state(lake)
    return st is not None and lake.version("silver/member_xref") == st.xref_version
