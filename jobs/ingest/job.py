"""Ingestion step: landing files of one source -> bronze, quarantine, manifest.

Read top to bottom: find the files to take in (new, late or re-sent), parse them
to text rows in plain Python (jobs.ingest.parse), check every row against the
source's Great Expectations suite (jobs.ingest.rules), then in one Delta commit
per table replace those files' rows in bronze and quarantine, and record the
files in ``meta/ingest_manifest``. Replacing by ``_source_file`` is what makes a
re-run or a re-sent file never duplicate a row: the manifest is written last, so
a crash in between only means the same files are taken in again next time.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import lake_state, storage
from jobs.context import RunContext
from jobs.engine import parquet_options
from jobs.ingest.bronze_types import (
    first_copies,
    flag_conflicts,
    is_suspect,
    suspect_hashes,
    with_content_hash,
)
from jobs.ingest.distributed import EXECUTOR_GROUP_BYTES, parse_on_executors, parse_place
from jobs.ingest.expand import expand
from jobs.ingest.landing import Known, LandingFile, Refused, check_ready, scan
from jobs.ingest.parse import parse_file
from jobs.ingest.rules import null_invalid_fields, split
from jobs.lake import write_retrying
from jobs.laps import Laps
from jobs.privacy.suppression import apply_suppression
from jobs.schemas import table_schema
from jobs.sources import SOURCES, Source

log = logging.getLogger(__name__)

# Bytes of landing files from which parsing is spread over a process pool: a
# spawned worker pays ~2-5 s of imports (pyarrow pulls in pandas), which only
# pays off on big batches.
PARALLEL_FROM_BYTES = 64 << 20


def staging_dir(ctx: RunContext, source: str) -> str:
    """Staged Parquet of this run's parsed files, in the lake's own state folder (a local
    folder or an object-store prefix, jobs.storage)."""
    return storage.join(lake_state.staging_dir(ctx.settings.paths.lake, ctx.run_id), source)


GROUP_BYTES = 32 << 20  # landing bytes per staged Parquet file: few files, each of a useful size


def _parse_group(args: tuple[list[tuple[str, str, str, str]], str]) -> list[dict]:
    """Worker: parse a group of files into one Parquet file; return each file's stats."""
    files, out = args
    tables, stats = [], []
    for path, source, rel, day in files:
        pf = parse_file(Path(path), source, rel, day)
        tables.append(pf.to_arrow())
        stats.append(
            {
                "_source_file": rel,
                "size_bytes": pf.size_bytes,
                "sha256": pf.sha256,
                "encoding": pf.encoding,
                "error": pf.error,
                "rows": pf.n_rows,
            }
        )
    pq.write_table(pa.concat_tables(tables), out)
    return stats


def group_files(
    files: list[LandingFile], out_dir: str, group_bytes: int = GROUP_BYTES
) -> list[tuple[list[tuple[str, str, str, str]], str]]:
    """``files`` in groups of about ``group_bytes``, each with its staged Parquet path."""
    groups: list[list[tuple[str, str, str, str]]] = [[]]
    size = 0
    for f in files:
        if groups[-1] and size + f.size_bytes > group_bytes:
            groups.append([])
            size = 0
        groups[-1].append((str(f.path), f.source, f.rel_path, f.business_date.isoformat()))
        size += f.size_bytes
    return [(g, storage.join(out_dir, f"part-{i:05d}.parquet")) for i, g in enumerate(groups)]


def parse_files(files: list[LandingFile], out_dir: str) -> list[dict]:
    """Parse ``files`` into staged Parquet under ``out_dir`` (one file per ~32 MB of input)."""
    storage.make_dirs(out_dir)
    jobs = group_files(files, out_dir)
    if sum(f.size_bytes for f in files) < PARALLEL_FROM_BYTES or len(jobs) < 2:
        return [s for j in jobs for s in _parse_group(j)]
    # spawn, not fork: the embedded engine runs threads that must not be forked.
    with ProcessPoolExecutor(
        max_workers=2, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        return [s for group in pool.map(_parse_group, jobs) for s in group]


def parse_staged(ctx: RunContext, files: list[LandingFile], out_dir: str) -> list[dict]:
    """Parse ``files`` into staged Parquet: on a cluster engine's executors (same parser,
    jobs.ingest.distributed), else in this process. One statistics row per file."""
    if parse_place(ctx.settings) == "executors":
        storage.make_dirs(out_dir)
        tasks = group_files(files, out_dir, EXECUTOR_GROUP_BYTES)
        return parse_on_executors(ctx.spark, tasks, _parse_group)
    return parse_files(files, out_dir)


def _known_files(ctx: RunContext, source: str) -> dict[str, Known]:
    manifest = ctx.lake.read("meta/ingest_manifest").filter(F.col("source") == source)
    rows = manifest.select("_source_file", "size_bytes", "mtime_ns", "sha256").collect()
    return {r._source_file: Known(r.size_bytes, r.mtime_ns or 0, r.sha256) for r in rows}


def _in_list(column: str, values: list[str]) -> str:
    quoted = ", ".join("'" + v.replace("'", "\\'") + "'" for v in sorted(set(values)))
    return f"`{column}` IN ({quoted})"


QUARANTINE_COLUMNS = table_schema("quarantine/_default").columns


def materialize(df: DataFrame, path: str) -> DataFrame:
    """Write ``df`` once as Parquet at ``path`` and read it back (schema kept, empty or
    not): intermediate results several writes read, computed once. Parquet, not a staging
    Delta table: the checked rows of a 100k first run's 2M web events took 7.2 s to write
    as Parquet and 11.3 s as Delta on Sail 0.7.2."""
    options = parquet_options(df.sparkSession)
    write_retrying(df, lambda rows: rows.write.mode("overwrite").options(**options).parquet(path))
    return df.sparkSession.read.schema(df.schema).parquet(path)


def _count_by_file(tables: dict[str, DataFrame]) -> dict[str, dict[str, int]]:
    """{kind: {_source_file: rows}} of several tables' rows, in one query (``tables``: kind
    -> rows holding ``_source_file``)."""
    parts = [df.select("_source_file", F.lit(kind).alias("kind")) for kind, df in tables.items()]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    counts: dict[str, dict[str, int]] = {kind: {} for kind in tables}
    for r in union.groupBy("kind", "_source_file").count().collect():
        counts[r["kind"]][r["_source_file"]] = int(r["count"])
    return counts


def check_rows(staged: DataFrame, source: str, earliest_date: dt.date | None = None) -> DataFrame:
    """Staged rows (one per parsed row) as text columns with ``_reasons`` and ``_field_issues``.

    ``_business_date`` is typed; ``_earliest_date`` (``ingest.earliest_date``,
    null when not set) is what the ``*_out_of_range`` rules compare against.
    """
    dated = expand(staged, source).withColumns(
        {
            "_business_date": F.to_date("_business_date"),
            "_earliest_date": F.lit(earliest_date).cast("date"),
        }
    )
    return split(dated, source)


# A batch of at most this many rows has its keys broadcast to pick the bronze rows that
# share them (a hash table of its keys; a bigger batch lets the engine choose the join).
BROADCAST_KEYS_MAX_ROWS = 2_000_000


def existing_with_keys(
    existing: DataFrame,
    batch: DataFrame,
    keys: list[str],
    batch_rows: int,
    files_read: Callable[[dict[str, tuple]], float] | None = None,
) -> DataFrame:
    """The rows of ``existing`` holding a key some row of ``batch`` holds: the only ones
    that can repeat a key of the batch. Grain kept (one existing row).

    A night's batch is small and bronze is all of history (at 1M members, 105k POS lines
    against 8.9M): its keys are broadcast, so bronze is only streamed past them instead
    of grouped by key whole. ``files_read(ranges)``: the share of bronze's files a filter
    on the batch's key ranges would still read (:meth:`jobs.lake.Lake.share_of_files_in_ranges`);
    the filter is added when it skips at least half of them (:func:`key_ranges`).
    """
    wanted = batch.select(*keys).distinct()
    if batch_rows <= BROADCAST_KEYS_MAX_ROWS:
        wanted = F.broadcast(wanted)
        if files_read is not None:
            ranges = key_ranges(batch, keys)
            if ranges is None:
                return existing.limit(0)  # no whole key in the batch: nothing can repeat
            if files_read(ranges) <= MAX_SHARE_READ:
                existing = existing.filter(in_ranges(ranges))
    return existing.join(wanted, keys, "left_semi")


# The key-range filter is added when the Delta statistics say it reads at most this share
# of bronze's files: where keys grow with time (POS order ids start with their date) a
# night's range skips every other day's files (1M members, a day's 95k POS line keys
# against 8.9M bronze lines: 1.1-2.2 -> 0.05-0.08 s). Random keys (web event ids) span
# every file; a filter on them skipped nothing and cost 3 s of string comparisons.
MAX_SHARE_READ = 0.5


def key_ranges(batch: DataFrame, keys: list[str]) -> dict[str, tuple] | None:
    """Each key column's [min, max] over the batch; None when a column holds no value
    (no row of the batch has a whole key: a key with a null never matches)."""
    bounds = batch.agg(
        *[F.min(k).alias(f"lo{i}") for i, k in enumerate(keys)],
        *[F.max(k).alias(f"hi{i}") for i, k in enumerate(keys)],
    ).first()
    ranges = {}
    for i, k in enumerate(keys):
        lo, hi = (None, None) if bounds is None else (bounds[f"lo{i}"], bounds[f"hi{i}"])
        if lo is None or hi is None:
            return None
        ranges[k] = (lo, hi)
    return ranges


def in_ranges(ranges: dict[str, tuple]) -> Column:
    """Every column within its [low, high] (nulls are outside)."""
    condition = F.lit(True)
    for column, (low, high) in ranges.items():
        condition = condition & F.col(column).between(F.lit(low), F.lit(high))
    return condition


def lookup_key_column(src: Source) -> dict[str, Column]:
    """{the source's dedup lookup key: xxhash64 of its key} ({} without one)."""
    dedup = src.dedup
    return {dedup.lookup_key: F.xxhash64(*dedup.key)} if dedup.lookup_key else {}


# Up to this many bronze rows whose lookup key is one of the batch's are fetched by it;
# more (a whole history re-sent) and the plain lookup by the key's text runs instead.
MAX_KEY_HITS = 200_000


def earlier_deliveries(
    ctx: RunContext, src: Source, batch: DataFrame, where: str, batch_rows: int
) -> DataFrame:
    """The bronze rows outside this batch's files (``where``) holding a key of ``batch``
    (:func:`existing_with_keys`; grain: one bronze row).

    With a lookup key (``Dedup.lookup_key``, never null in bronze by its statistics) the
    batch's keys are first found in that one long column with their business dates, a
    few rows; only those dates are then read for the rows themselves. At 1M members a
    night's 236k web events against 20M in bronze: 6.1-6.4 s looked up by the event_id
    text, 2.3-2.4 s so. Otherwise, or when the hits are many, by the key's text."""
    table, lookup = src.bronze_table, src.dedup.lookup_key
    keys = list(src.dedup.key)
    existing = ctx.lake.read(table).filter(f"NOT ({where})")

    def plain() -> DataFrame:
        return existing_with_keys(existing, batch, keys, batch_rows, _files_read(ctx, table))

    if (
        lookup is None
        or batch_rows > BROADCAST_KEYS_MAX_ROWS
        or not ctx.lake.exists(table)
        or not ctx.lake.never_null(table, lookup)
    ):
        return plain()
    wanted = F.broadcast(batch.select(lookup).distinct())
    hits = existing.join(wanted, lookup, "left_semi").select(lookup, "_business_date")
    found = hits.limit(MAX_KEY_HITS + 1).collect()
    if len(found) > MAX_KEY_HITS:
        return plain()
    if not found:
        return existing.limit(0)
    dates = sorted({r["_business_date"] for r in found})
    hit_keys = ctx.spark.createDataFrame([(r[lookup],) for r in found], f"{lookup} long")
    candidates = existing.filter(F.col("_business_date").isin(*dates)).join(
        F.broadcast(hit_keys.distinct()), lookup, "left_semi"
    )
    # Equal lookup keys are not yet equal keys: the key itself decides.
    return candidates.join(F.broadcast(batch.select(*keys).distinct()), keys, "left_semi")


# Up to this many bronze rows sharing a key with the batch are read once into a local
# frame: a night's redeliveries, whose dedup then neither scans bronze again nor joins.
MAX_LOCAL_EXISTING = 50_000


def _files_read(ctx: RunContext, table: str) -> Callable[[dict[str, tuple]], float] | None:
    """:meth:`jobs.lake.Lake.share_of_files_in_ranges` of bronze ``table`` (None before
    it exists: nothing to skip)."""
    if not ctx.lake.exists(table):
        return None
    return lambda ranges: ctx.lake.share_of_files_in_ranges(table, ranges)


def read_once(existing: DataFrame) -> DataFrame | None:
    """``existing`` (the bronze rows holding a key of the batch, narrow columns) read
    once: None when there are none, a local frame when there are few (the dedup's join
    then costs no second scan of all of bronze: 1M members, a night's 236k web events
    against 20M), else the query itself."""
    rows = existing.limit(MAX_LOCAL_EXISTING + 1).collect()
    if not rows:
        return None
    if len(rows) > MAX_LOCAL_EXISTING:
        return existing
    return existing.sparkSession.createDataFrame(rows, existing.schema)


def split_flagged(
    batch: DataFrame,
    keys: list[str],
    existing: DataFrame | None,
    local: bool,
    flag: Callable[[DataFrame, bool], tuple[DataFrame, bool]],
    stays: dict[str, Column],
    path: str,
) -> tuple[DataFrame, DataFrame | None]:
    """(rows that stay in bronze, flagged repeats or None): ``flag(rows, few)`` (which
    adds the flag columns, with whether every row stays; ``few`` as in
    :func:`jobs.ingest.bronze_types.first_copies`) runs on the suspects of
    :func:`suspect_hashes` only, whose flags are materialised at ``path``; every other
    row gets the flags ``stays`` of a row that stays. ``existing`` is ``local`` when
    :func:`read_once` read it (else every row is flagged, as when the suspects' keys are
    too many). Grain kept: one delivered row, in exactly one of the two.
    """
    hashes = suspect_hashes(batch, keys, existing) if local else None
    if hashes is None:
        flagged, plain = flag(batch, False)
        if plain:
            return flagged, None
        flagged = materialize(flagged, path)
        return flagged, flagged
    if not hashes:
        return batch.withColumns(stays), None
    rest, suspects = route(batch, is_suspect(keys, hashes), storage.join(path, "routed"))
    rest = rest.withColumns(stays)
    flagged = materialize(flag(suspects, True)[0], storage.join(path, "flagged"))
    return rest.unionByName(flagged.select(*rest.columns)), flagged


def route(batch: DataFrame, picked: Column, path: str) -> tuple[DataFrame, DataFrame]:
    """(the rows of ``batch`` not ``picked``, those picked), written once as Parquet at
    ``path`` in one folder each and read back: one scan of the batch where filtering it
    twice scanned it once per part, and again for each query of the flags (1M members'
    first run, 20M web events: the suspects alone took 37 s, as long as the whole
    batch's bronze write). ``_raw`` is kept on the picked rows only: a row that is not
    picked is its key's only copy and goes to bronze, which does not hold it."""
    routed = batch.withColumn("_picked", picked)
    if "_raw" in batch.columns:
        routed = routed.withColumn("_raw", F.when(F.col("_picked"), F.col("_raw")))
    routed = routed.withColumn("route", F.when(F.col("_picked"), "picked").otherwise("rest"))
    storage.remove_tree(path)  # an earlier batch's folders must not be read as this one's
    spark = batch.sparkSession
    options = parquet_options(spark)
    write_retrying(
        routed.drop("_picked"),
        lambda rows: rows.write.mode("overwrite").options(**options).partitionBy("route").parquet(path),
    )

    def part(name: str) -> DataFrame:
        folder = storage.join(path, f"route={name}")
        if not storage.exists(folder):  # no row went there
            return spark.createDataFrame([], batch.schema)
        return spark.read.schema(batch.schema).parquet(folder)

    return part("rest"), part("picked")


def web_copies(
    bronze: DataFrame, existing_ids: DataFrame | None, few: bool = False
) -> tuple[DataFrame, bool]:
    """Mark good web rows as first deliveries or redelivered copies; with whether none
    is a copy (``_is_dup`` then false on every row).

    ``bronze``: typed good rows of this batch (grain: one delivered copy).
    ``existing_ids``: (event_id, _source_file) already in bronze/web_events from
    files outside this batch (None: there are none, :func:`read_once`). Adds ``_is_dup`` and ``first_source_file`` (the
    file of the copy that stays in bronze/web_events).
    """
    carry = {"_source_file": "_first_source_file"}
    marked, all_first = first_copies(bronze, ["event_id"], carry, few)
    if existing_ids is not None:
        existing = existing_ids.groupBy("event_id").agg(
            F.min("_source_file").alias("_existing_file")
        )
        joined = marked.join(existing, "event_id", "left")
    else:  # no event of the batch is in bronze yet: no join
        joined = marked.withColumn("_existing_file", F.lit(None).cast("string"))
    marked = joined.withColumn(
        "_is_dup", ~F.col("_is_first") | F.col("_existing_file").isNotNull()
    ).withColumn("first_source_file", F.coalesce("_existing_file", "_first_source_file"))
    return marked, all_first and existing_ids is None


def refused_manifest_rows(ctx: RunContext, refused: list[Refused]) -> list[dict]:
    """Manifest rows (status ``refused``) for landing entries that are never read."""
    rows = []
    for r in refused:
        log.warning("%s: refused (%s: %s), not read", r.rel_path, r.reason, r.detail)
        rows.append(
            dict(
                source=r.source,
                business_date=r.business_date,
                _source_file=r.rel_path,
                status="refused",
                error=f"{r.reason}: {r.detail}",
                rows_total=0,
                rows_good=0,
                rows_bad=0,
                rows_duplicate=0,
                rows_suppressed=0,
                run_id=ctx.run_id,
            )
        )
    return rows


def write_manifest(ctx: RunContext, rows: list[dict], known: Collection[str] = ()) -> None:
    """Upsert one ``meta/ingest_manifest`` row per landing path (missing fields null).

    ``known``: the paths the manifest already holds (read under the lake's lock at the
    step's start). When no row is one of them, the rows are appended: one plain commit
    instead of a MERGE, which on a JVM engine costs several Spark jobs more.
    """
    if not rows:
        return
    schema = table_schema("meta/ingest_manifest").struct
    manifest = ctx.spark.createDataFrame(
        [tuple(r.get(f.name) for f in schema.fields) for r in rows], schema
    ).withColumn("ingested_at", F.current_timestamp())
    if any(r["_source_file"] in known for r in rows):
        ctx.lake.merge(manifest, "meta/ingest_manifest", on=["_source_file"])
    else:
        ctx.lake.append(manifest, "meta/ingest_manifest")


def _write_with_conflicts(
    ctx: RunContext,
    src: Source,
    bronze: DataFrame,
    bad: DataFrame,
    where: str,
    stage: str,
    batch_rows: int,
    lap: Laps,
) -> DataFrame:
    """Write rows whose key may repeat (POS lines, ledger transactions).

    An identical repeat of a key already taken in goes to the source's duplicates
    table (counted, not quarantined); a repeat with other content to quarantine as
    the source's conflict reason. Returns the quarantine rows to write.
    """
    dedup = src.dedup
    existing = ctx.lake.read(src.bronze_table).filter(f"NOT ({where})")
    existing = existing_with_keys(
        existing, bronze, list(dedup.key), batch_rows, _files_read(ctx, src.bronze_table)
    )
    existing = existing.select(*dedup.key, "_content_hash", "_source_file")
    prior = read_once(existing)
    lap("dedup_bronze")  # the bronze rows sharing a key with the batch, read
    stays = {"_dup_reason": F.lit(None).cast("string"), "first_source_file": F.col("_source_file")}
    # Materialised (the suspects' flags): bronze, duplicates and quarantine all read them.
    flagged, suspects = split_flagged(
        with_content_hash(bronze, dedup.content_columns), list(dedup.key), prior,
        prior is not existing, lambda rows, few: flag_conflicts(rows, prior, dedup, few), stays,
        storage.join(stage, "flagged"),
    )  # fmt: skip
    lap("dedup")
    kept = flagged if suspects is None else flagged.filter(F.col("_dup_reason").isNull())
    ctx.lake.replace_where(kept, src.bronze_table, where)
    repeats = flagged.limit(0) if suspects is None else suspects
    ctx.lake.replace_where(
        repeats.filter(F.col("_dup_reason") == dedup.duplicate_reason),
        dedup.duplicates_table,
        where,
    )
    conflicts = repeats.filter(F.col("_dup_reason") == dedup.conflict_reason).withColumn(
        "_reasons", F.array("_dup_reason")
    )
    cols = [c for c in QUARANTINE_COLUMNS if c not in ("_ingested_at", "_run_id")]
    return bad.select(*cols).unionByName(conflicts.select(*cols))


def _write_rows(
    ctx: RunContext,
    source: str,
    checked: DataFrame,
    where: str,
    stage: str,
    batch_rows: int,
    lap: Laps | None = None,
) -> None:
    """Checked rows -> bronze (invalid optional fields nulled), duplicates and quarantine.
    ``batch_rows``: the parsed rows of the batch (how its keys are looked up in bronze);
    ``lap`` times the dedup and the writes."""
    lap = lap or Laps()
    src = SOURCES[source]
    stamp = {"_ingested_at": F.current_timestamp(), "_run_id": F.lit(ctx.run_id)}
    good = null_invalid_fields(checked.filter(F.size("_reasons") == 0), source)
    bad = checked.filter(F.size("_reasons") > 0)
    bronze = src.type_rows()(good).withColumns(stamp)
    bronze, _ = apply_suppression(ctx, source, bronze)  # erased people (cdp forget)
    bad, _ = apply_suppression(ctx, source, bad)  # their bad rows hold PII in _raw too
    if src.dedup.policy == "first_copy":
        bronze = bronze.withColumns(lookup_key_column(src))
        existing = earlier_deliveries(ctx, src, bronze, where, batch_rows)
        existing = existing.select("event_id", "_source_file")
        ids = read_once(existing)
        lap("dedup_bronze")
        stays = {"_is_dup": F.lit(False), "first_source_file": F.col("_source_file")}
        marked, repeats = split_flagged(
            bronze, ["event_id"], ids, ids is not existing,
            lambda rows, few: web_copies(rows, ids, few), stays, storage.join(stage, "dedup"),
        )  # fmt: skip
        lap("dedup")
        firsts = marked if repeats is None else marked.filter(~F.col("_is_dup"))
        ctx.lake.replace_where(firsts, src.bronze_table, where)
        copies = marked.limit(0) if repeats is None else repeats.filter(F.col("_is_dup"))
        ctx.lake.replace_where(copies, src.dedup.duplicates_table, where)
    elif src.dedup.policy == "first_copy_conflicts":
        bad = _write_with_conflicts(ctx, src, bronze, bad, where, stage, batch_rows, lap)
    else:
        ctx.lake.replace_where(bronze, src.bronze_table, where)
    lap("write_bronze")
    ctx.lake.replace_where(bad.withColumns(stamp), src.quarantine_table, where)
    lap("write_quarantine")


def _manifest_rows(ctx: RunContext, source: str, todo: list[LandingFile], stats: list[dict],
                   where: str) -> list[dict]:  # fmt: skip
    """One manifest row per file taken in, with where its rows went."""
    src = SOURCES[source]
    tables = {"good": src.bronze_table, "bad": src.quarantine_table}
    if src.dedup.duplicates_table:
        tables["dup"] = src.dedup.duplicates_table
    counts = _count_by_file({k: ctx.lake.read(t).filter(where) for k, t in tables.items()})
    good_counts, bad_counts = counts["good"], counts["bad"]
    dup_counts = counts.get("dup", {})
    rows = []
    by_rel = {f.rel_path: f for f in todo}
    for s in stats:
        f = by_rel[s["_source_file"]]
        good_n = good_counts.get(f.rel_path, 0)
        dup_n = dup_counts.get(f.rel_path, 0)
        bad_n = bad_counts.get(f.rel_path, 0)
        rows.append(
            dict(
                source=source,
                business_date=f.business_date,
                _source_file=f.rel_path,
                size_bytes=s["size_bytes"],
                mtime_ns=f.mtime_ns,
                sha256=s["sha256"],
                encoding=s["encoding"],
                status="unreadable" if s["error"] and not good_n else "ingested",
                error=s["error"],
                rows_total=s["rows"],
                rows_good=good_n,
                rows_bad=bad_n,
                rows_duplicate=dup_n,
                # Every parsed row ends in bronze, quarantine or duplicates unless suppressed.
                rows_suppressed=max(s["rows"] - good_n - bad_n - dup_n, 0),
                run_id=ctx.run_id,
            )
        )
    return rows


def ingest(ctx: RunContext, source: str) -> dict:
    """Take in every ready, new or re-sent file of ``source`` up to ctx.as_of.

    Entries of the landing zone that are not plain files in canonical day
    folders are refused: recorded in the manifest (``status = refused``) and
    counted in ``refused``, never read.
    """
    paths, table = ctx.settings.paths, SOURCES[source].bronze_table
    if SOURCES[source].optional and not (Path(paths.landing) / source).is_dir():
        return {"files": 0, "rows_in": 0, "rows_out": 0, "quarantined": 0, "duplicates": 0,
                "waiting": [], "refused": 0, "refused_paths": [], "absent": True}  # fmt: skip
    if not ctx.allow_incomplete:
        check_ready(paths.landing, source, ctx.as_of)
    known = _known_files(ctx, source)
    found = scan(paths.landing, source, ctx.as_of, known, ctx.allow_incomplete)
    todo, waiting = found.todo, found.waiting
    for folder in waiting:
        log.warning("%s: no _SUCCESS yet, will be taken in when complete", folder)
    refused = refused_manifest_rows(ctx, found.refused)
    refused_summary = {
        "refused": len(refused),
        "refused_paths": [r["_source_file"] for r in refused],
    }
    if not todo:
        write_manifest(ctx, refused, known)
        return {"files": 0, "rows_in": 0, "rows_out": 0, "quarantined": 0, "duplicates": 0,
                "waiting": waiting, **refused_summary}  # fmt: skip

    # A lake from before a column: nulls, or the dedup's lookup key computed from its key.
    added = ctx.lake.add_missing_columns(table, lookup_key_column(SOURCES[source]))
    if added:
        log.warning("%s: added column(s) %s to a table written before them", source, added)
    stage = staging_dir(ctx, source)
    storage.remove_tree(stage)
    batches = day_batches(todo, ctx.settings.ingest.max_batch_bytes)
    figures = [_ingest_batch(ctx, source, b, i, stage, known) for i, b in enumerate(batches)]
    write_manifest(ctx, refused, known)
    laps: dict[str, float] = {}
    for f in figures:
        for name, seconds in f["phase_seconds"].items():
            laps[name] = round(laps.get(name, 0.0) + seconds, 3)
    return {
        "phase_seconds": laps,
        "batches": len(batches),
        "files": len(todo),
        **{
            k: sum(f[k] for f in figures)
            for k in ("rows_in", "rows_out", "quarantined", "duplicates")
        },  # fmt: skip
        "days": sorted({d for f in figures for d in f["days"]}),
        "waiting": waiting,
        **refused_summary,
    }


def day_batches(files: list[LandingFile], max_bytes: int) -> list[list[LandingFile]]:
    """``files`` by business date, cut into batches of whole days of at most ``max_bytes``
    of landing files (a day bigger than that is a batch of its own; 0: one batch).

    Taken in date order, each batch's repeats are looked up in the bronze rows the
    batches before it wrote, so the first delivery by date, file and line wins as in one
    batch; each batch's staging, spill and memory are its own (a first run's 90 days at
    5M members ran a 92 GB disk out in one batch: bench/results/5m-90d-272887e.json).
    """
    ordered = sorted(files, key=lambda f: (f.business_date, f.rel_path))
    if max_bytes <= 0:
        return [ordered] if ordered else []
    by_day: dict[dt.date, list[LandingFile]] = {}
    for f in ordered:
        by_day.setdefault(f.business_date, []).append(f)
    batches: list[list[LandingFile]] = []
    size = 0
    for day_files in by_day.values():
        day_size = sum(f.size_bytes for f in day_files)
        if not batches or size + day_size > max_bytes:
            batches.append([])
            size = 0
        batches[-1].extend(day_files)
        size += day_size
    return batches


def raw_where_needed(checked: DataFrame, source: str) -> DataFrame:
    """``checked`` with ``_raw`` (the text as received) kept only on the rows that can
    reach quarantine: the bad rows, and every row of a source whose repeats with other
    content are quarantined as conflicts (``first_copy_conflicts``). A good row's text is
    otherwise never read again (bronze does not hold it), so it is not written: at 1M
    members, the first run's 20M checked web events are 562 MB instead of 1.3 GB, written
    in 42.1 s instead of 50.6 s, and read whole in 12.3 s instead of 24.5 s."""
    if SOURCES[source].dedup.policy == "first_copy_conflicts":
        return checked
    return checked.withColumn("_raw", F.when(F.size("_reasons") > 0, F.col("_raw")))


def checked_paths(ctx: RunContext, source: str) -> list[str]:
    """The run's checked rows of ``source``: one Parquet folder per batch (the quality
    step validates them all)."""
    stage = staging_dir(ctx, source)
    if not storage.exists(stage):
        return []
    names = sorted(n for n, folder in storage.list_dir(stage) if folder and n.startswith("checked"))
    return [storage.join(stage, n) for n in names]


def _ingest_batch(
    ctx: RunContext,
    source: str,
    todo: list[LandingFile],
    index: int,
    stage: str,
    known: Collection[str],
) -> dict:
    """Parse, check and write one batch of whole days, then its manifest rows (so a
    crash keeps the batches before it: their files are known to the next run)."""
    table = SOURCES[source].bronze_table
    lap = Laps()
    raw = storage.join(stage, "raw")
    storage.remove_tree(raw)
    stats = parse_staged(ctx, todo, raw)
    lap("parse")
    files = [f.rel_path for f in todo]
    days = sorted({f.business_date.isoformat() for f in todo})
    where = f"{_in_list('_business_date', days)} AND {_in_list('_source_file', files)}"
    rows_in = sum(s["rows"] for s in stats)
    if rows_in:
        # Materialise the checked rows once: bronze, quarantine, counts and the
        # quality step all read them.
        staged = ctx.spark.read.parquet(raw)
        earliest = ctx.settings.ingest.earliest_date
        checked_at = storage.join(stage, f"checked-{index:04d}")
        checked = materialize(
            raw_where_needed(check_rows(staged, source, earliest), source), checked_at
        )
        lap("check_rows")
        _write_rows(ctx, source, checked, where, stage, rows_in, lap)
    elif ctx.lake.exists(table):
        # Only empty files: a re-sent empty file still removes its earlier rows.
        ctx.lake.replace_where(
            ctx.spark.createDataFrame([], table_schema(table).struct), table, where
        )
    storage.remove_tree(raw)  # parsed text: the checked rows hold what is still needed
    manifest_rows = _manifest_rows(ctx, source, todo, stats, where)
    lap("count_by_file")
    write_manifest(ctx, manifest_rows, known)
    lap("manifest")
    return {
        "phase_seconds": lap.seconds,
        "rows_in": rows_in,
        "rows_out": sum(r["rows_good"] for r in manifest_rows),
        "quarantined": sum(r["rows_bad"] for r in manifest_rows),
        "duplicates": sum(r["rows_duplicate"] for r in manifest_rows),
        "days": days,
    }


def __getattr__(name: str) -> Callable[[RunContext], dict]:
    """``ingest_<source>``: the step function of each source of the registry (the step
    table names ``jobs.ingest.job:ingest_pos`` and so on), so a new source needs no code here."""
    source = name.removeprefix("ingest_")
    if name.startswith("ingest_") and source in SOURCES:

        def step(ctx: RunContext) -> dict:
            return ingest(ctx, source)

        step.__name__ = name
        return step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
