"""A backfill computes gold as of D without rewinding silver.

Silver holds the lake's *current* state (members, their ids, orders with the member of
today's identity graph). ``cdp run --date D`` for a D before the date silver was last
brought to is a backfill: identity and ``orders`` must compute silver *as of D* for the
gold steps of D (``gold`` for D then equals what the nightly run of D wrote, late data
included), but analysts querying silver must keep seeing today.

So a backfill runs every step on a :class:`BackfillLake`: the tables the silver steps
write (``SILVER_STATE``: every ``silver/*`` table, ``restricted/member_pii`` and the
incremental state of identity and orders) are read from and written to a scratch lake
under ``<lake>/_cdp/backfill/<run_id>/``; a table the backfill has not written yet is read
from the real lake (identity keeps today's member ids as its baseline, as a night
does). Everything else (bronze, quarantine, gold for D, meta, exports) is the real
lake's. The scratch lake is removed when the run ends (and by ``cdp forget``: it
holds PII). Silver, its state and the next night are untouched; a backfill's silver
steps recompute in full (identity and orders both), which is what "as of D" needs.

The decision is made per step from the real lake (the date in the identity and
orders state rows), which a backfill never changes, so every step of one run, Airflow
tasks included (one run id per DAG run), sees the same scratch lake.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from jobs import lake_state, storage
from jobs.context import RunContext
from jobs.lake import Lake, read_state_row

# Tables the silver steps (identity, orders) write besides silver/*: they move with
# silver, or a backfill would rewind them.
SILVER_STATE = frozenset(
    {
        "restricted/member_pii",
        "restricted/identity_pos_orders",
        "meta/identity_state",
        "meta/identity_web_links",
        "meta/identity_web_ids",
        "meta/identity_components",
        "meta/identity_refused",
        "meta/identity_junk_pairs",
        "meta/silver_orders_state",
        "meta/points_ledger_state",
    }
)
# The state rows that say which date silver was last brought to.
STATE_ROWS = ("meta/identity_state", "meta/silver_orders_state")


def follows_silver(name: str) -> bool:
    """True for the tables a backfill computes as of D in its scratch lake."""
    return name.startswith("silver/") or name in SILVER_STATE


def silver_as_of(lake: Lake) -> dt.date | None:
    """The latest date the silver steps ran for (None before the first run)."""
    dates = [row[0] for row in (read_state_row(lake, t) for t in STATE_ROWS) if row]
    return max(dates) if dates else None


def scratch_root(ctx: RunContext) -> str:
    """The backfill's silver, in the lake's state folder (local or object store)."""
    return storage.join(lake_state.state_dir(ctx.settings.paths.lake), "backfill", ctx.run_id)


class BackfillLake(Lake):
    """The real lake, with the silver tables (``follows_silver``) in a scratch lake.

    Reads of such a table come from the scratch lake once the backfill wrote it, from
    the real lake before; writes always go to the scratch lake (a MERGE, append or
    partial replace first copies the real table's current rows there). ``path`` of
    such a table is the scratch path, so code writing by path can never reach the
    real silver table.
    """

    def __init__(self, real: Lake, scratch: str | Path):
        super().__init__(real.spark, real.root)
        self.real = real
        self.scratch = Lake(real.spark, scratch)

    def on(self, spark: SparkSession) -> Lake:
        return BackfillLake(self.real.on(spark), self.scratch.root)

    def _reader(self, name: str) -> Lake:
        if follows_silver(name) and self.scratch.exists(name):
            return self.scratch
        return self.real

    def _writer_for(self, name: str, copy: bool) -> Lake:
        if not follows_silver(name):
            return self.real
        if copy and not self.scratch.exists(name) and self.real.exists(name):
            self._copy_in(name)
        return self.scratch

    def _copy_in(self, name: str) -> None:
        """The real table's current rows as the scratch table's first version."""

        parts = self.real.delta_table(name).metadata().partition_columns
        writer = self.real.read(name).write.format("delta").mode("overwrite")
        if parts:
            writer = writer.partitionBy(*parts)
        writer.save(self.scratch.path(name))

    def path(self, name: str) -> str:
        return self.scratch.path(name) if follows_silver(name) else self.real.path(name)

    def exists(self, name: str) -> bool:
        return self._reader(name).exists(name)

    def read(self, name: str) -> DataFrame:
        return self._reader(name).read(name)

    def read_version(self, name: str, version: int) -> DataFrame:
        return self._reader(name).read_version(name, version)

    def delta_table(self, name: str):
        """The delta-rs handle of the table reads see (the scratch copy or the real one)."""
        return self._reader(name).delta_table(name)

    def version(self, name: str) -> int:
        return self._reader(name).version(name)

    def overwrite(self, df: DataFrame, name: str, conform_schema: bool = True) -> None:
        self._writer_for(name, copy=False).overwrite(df, name, conform_schema)

    def append(self, df: DataFrame, name: str, conform_schema: bool = True) -> None:
        self._writer_for(name, copy=True).append(df, name, conform_schema)

    def replace_where(
        self, df: DataFrame, name: str, predicate: str, conform_schema: bool = True
    ) -> None:
        self._writer_for(name, copy=True).replace_where(df, name, predicate, conform_schema)

    def merge(self, df: DataFrame, name: str, on: list[str], **kw) -> None:
        self._writer_for(name, copy=True).merge(df, name, on, **kw)

    def apply_changes(self, changes: DataFrame, name: str, **kw) -> None:
        self._writer_for(name, copy=True).apply_changes(changes, name, **kw)

    def tables(self) -> list[str]:
        return self.real.tables()


def context_for(ctx: RunContext) -> RunContext:
    """``ctx`` itself, or for a backfill a copy whose lake is a :class:`BackfillLake`."""
    if isinstance(ctx.lake, BackfillLake):
        return ctx
    latest = silver_as_of(ctx.lake)
    if latest is None or ctx.as_of >= latest:
        return ctx
    backfill = dataclasses.replace(ctx)
    # Same key and session; only the lake differs (cached_property: set it directly).
    backfill.__dict__.update({k: v for k, v in ctx.__dict__.items() if k == "pii_key"})
    backfill.__dict__["lake"] = BackfillLake(ctx.lake, scratch_root(ctx))
    return backfill


def remove_scratch(ctx: RunContext) -> None:
    """Drop the run's scratch lake (it holds PII: restricted/member_pii)."""
    storage.remove_tree(scratch_root(ctx))
