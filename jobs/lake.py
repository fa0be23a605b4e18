"""Delta Lake I/O at the edges of the jobs: paths, reads and the few write modes.

Only APIs that both Sail and Apache Spark 4 + delta-spark support are used:
``format("delta")`` reads and writes, ``replaceWhere`` and SQL ``MERGE INTO`` (built by
one builder, :class:`Merge`, from :meth:`Lake.merge_into`).
Maintenance that Sail lacks (OPTIMIZE, VACUUM) goes through delta-rs
(``deltalake``), see jobs.maintenance.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs import lineage, storage
from jobs.engine import parquet_options
from jobs.schemas import conform, table_schema

if TYPE_CHECKING:
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

# ``materialise(df, name)``: ``df`` computed once (e.g. into a scratch folder, see
# :class:`ParquetScratch`) and read back, for a result several later queries read.
Materialise = Callable[[DataFrame, str], DataFrame]

# pysail 0.7.2 in cluster mode cannot ship a DataFusion built-in function (size, upper,
# substr, sum, ...) to the stage that writes a Delta table: the write fails before it
# commits anything (docs/scaling.md; pinned in tests/test_sail_cluster.py).
_SAIL_CLUSTER_GAP = re.compile(r"Extended\w*Udf: no UDF found for")


def write_retrying(df: DataFrame, write: Callable[[DataFrame], None]) -> None:
    """``write(df)``: a write of ``df`` (Delta or Parquet). Where a Sail cluster cannot
    run one of the plan's functions in the writing stage, the same write again behind a
    shuffle, which gives those functions a stage of their own (the same rows; other
    engines never retry)."""
    try:
        write(df)
    except Exception as exc:  # the error class depends on the client (Connect or classic)
        if not _SAIL_CLUSTER_GAP.search(str(exc)):
            raise
        log.info("Write again behind a shuffle (%s)", str(exc).splitlines()[0])
        partitions = int(df.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        write(df.repartition(partitions))


# The Delta table property that has MERGE, UPDATE and DELETE mark the rows they replace
# in a deletion vector (a bitmap of row positions beside the data file) instead of
# rewriting every file holding one. Set on the tables schemas/ declares with
# ``deletion_vectors: true``. On Sail 0.7.2, a 1M-member night's re-keying of 67 orders
# went from 7.6 s (their four months rewritten) to 2.2 s (docs/scaling.md "Deletion
# vectors on the orders and the points ledger"). Readers need Delta's deletionVectors
# feature (reader 3).
DELETION_VECTORS = "delta.enableDeletionVectors"


def wants_deletion_vectors(name: str) -> bool:
    """Whether schemas/ declares table ``name`` with deletion vectors (False for a table
    it does not declare)."""
    try:
        return table_schema(name).deletion_vectors
    except KeyError:
        return False


def _committed(lake: Lake, name: str) -> None:
    """After every commit of a Lake write: deletion vectors switched on where declared
    and not yet on (an engine that ignored the writer's option), noted for the step's
    lineage, then the crash tests' hook."""
    lake.enable_deletion_vectors(name)
    lineage.note_write(lake.path(name))
    _fault_hook(name)


def _fault_hook(name: str) -> None:
    """Crash tests: ``CDP_FAULT_KILL_AT=<layer/table>`` SIGKILLs this process right after
    that table's write committed, as a power cut or the OOM killer would (never set it in
    production; tests/reliability/test_crash_safety.py)."""
    if os.environ.get("CDP_FAULT_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class Lake:
    """The lakehouse under one root: ``<root>/<layer>/<table>`` Delta tables.

    The root is a local folder or an object-store URI (``s3://bucket/prefix``,
    jobs.storage); the engine and delta-rs take either."""

    def __init__(self, spark: SparkSession, root: str | Path):
        self.spark = spark
        self.root = str(storage.normalise(root)).rstrip("/")

    def on(self, spark: SparkSession) -> Lake:
        """The same lake through another session (e.g. a step's own, jobs.engine.step_spark)."""
        return Lake(spark, self.root)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _noted(self, name: str) -> str:
        """``name``'s path, noted as read by the step recording its lineage (jobs.lineage)."""
        path = self.path(name)
        lineage.note_read(path, lambda: lineage.table_version(path))
        return path

    def delta_table(self, name: str):
        """The delta-rs handle of a table (metadata, history, maintenance)."""
        from deltalake import DeltaTable

        path = self._noted(name)
        return DeltaTable(path, storage_options=storage.delta_storage_options(self.root))

    def exists(self, name: str) -> bool:
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(
            self._noted(name), storage_options=storage.delta_storage_options(self.root)
        )

    def read(self, name: str) -> DataFrame:
        """Read a table; an empty DataFrame with the declared schema when it does not exist yet."""
        if not self.exists(name):
            return self.spark.createDataFrame([], table_schema(name).struct)
        return self.spark.read.format("delta").load(self.path(name))

    def read_version(self, name: str, version: int) -> DataFrame:
        path = self._noted(name)
        return self.spark.read.format("delta").option("versionAsOf", version).load(path)

    def _writer(self, df: DataFrame, name: str, conform_schema: bool, whole: bool = False):
        """A Delta writer of ``df`` (conformed to the declared schema) into ``name``,
        partitioned as declared when it creates the table, or replaces it (``whole``)."""
        out = conform(df, name) if conform_schema else df
        writer = out.write.format("delta")
        creates = not self._is_table(name)
        if whole or creates:
            columns = self.partition_columns(name, conform_schema)
            if columns:
                writer = writer.partitionBy(*columns)
        if creates and wants_deletion_vectors(name):
            # Sail sets the property (and the protocol it needs) on the table it creates.
            writer = writer.option(DELETION_VECTORS, "true")
        return writer

    def _is_table(self, name: str) -> bool:
        """Whether table ``name`` exists: the writers' own look, not an input of the step
        (not noted in its lineage, as :meth:`exists` is)."""
        from deltalake import DeltaTable

        options = storage.delta_storage_options(self.root)
        return DeltaTable.is_deltatable(self.path(name), storage_options=options)

    def has_deletion_vectors(self, name: str) -> bool:
        """Whether table ``name``'s MERGEs write deletion vectors (its property is set).
        A look at the table's layout, not an input of the step: not noted in its lineage."""
        from deltalake import DeltaTable

        if not self._is_table(name):
            return False
        options = storage.delta_storage_options(self.root)
        config = DeltaTable(self.path(name), storage_options=options).metadata().configuration
        return config.get(DELETION_VECTORS) == "true"

    def enable_deletion_vectors(self, name: str) -> bool:
        """Switch deletion vectors on for a table schemas/ declares with them, when its
        log does not have them yet (a lake written before, or an engine that ignored the
        writer's option): one metadata commit through delta-rs, which raises the table's
        protocol to reader 3 / writer 7 (delta-rs 1.6 names ``variantType`` among its
        features too). Whether it committed."""
        from deltalake import DeltaTable

        if not wants_deletion_vectors(name) or self.has_deletion_vectors(name):
            return False
        path, options = self.path(name), storage.delta_storage_options(self.root)
        DeltaTable(path, storage_options=options).alter.set_table_properties(
            {DELETION_VECTORS: "true"}
        )
        log.info("%s: deletion vectors switched on", name)
        return True

    def partition_columns(self, name: str, declared: bool = True) -> list[str]:
        """The table's partition columns: as declared in schemas/ (``declared``), else as
        the existing table has them (none for a new one). The writer's own look at the
        table's layout is no input of the step: not noted in its lineage."""
        from deltalake import DeltaTable

        if declared:
            return list(table_schema(name).partition_by)
        path, options = self.path(name), storage.delta_storage_options(self.root)
        if not DeltaTable.is_deltatable(path, storage_options=options):
            return []
        return list(DeltaTable(path, storage_options=options).metadata().partition_columns)

    def overwrite(self, df: DataFrame, name: str, conform_schema: bool = True) -> None:
        """Replace the whole table (one Delta commit: readers see old or new, never half),
        partitioned as declared (or as it was: an overwrite with its schema replaced and
        no partition columns named leaves a Delta table unpartitioned, and every later
        MERGE then rewrites all of it)."""

        def save(rows: DataFrame) -> None:
            writer = self._writer(rows, name, conform_schema, whole=True).mode("overwrite")
            writer.option("overwriteSchema", "true").save(self.path(name))

        write_retrying(df, save)
        _committed(self, name)

    def append(self, df: DataFrame, name: str, conform_schema: bool = True) -> None:
        def save(rows: DataFrame) -> None:
            self._writer(rows, name, conform_schema).mode("append").save(self.path(name))

        write_retrying(df, save)
        _committed(self, name)

    def replace_where(
        self, df: DataFrame, name: str, predicate: str, conform_schema: bool = True
    ) -> None:
        """Atomically replace the rows matching ``predicate`` with ``df`` (one commit).

        Creates the table when it does not exist yet. ``df`` must only hold rows
        that match ``predicate``.
        """

        def save(rows: DataFrame) -> None:
            writer = self._writer(rows, name, conform_schema).mode("overwrite")
            if self.exists(name):
                writer = writer.option("replaceWhere", predicate)
            writer.save(self.path(name))

        write_retrying(df, save)
        _committed(self, name)

    def merge_into(
        self,
        source: DataFrame,
        name: str,
        on: list[str],
        *,
        null_safe: bool = True,
        target_filter: str | None = None,
    ) -> Merge:
        """A MERGE of ``source`` (alias ``s``) into the table ``name`` (alias ``t``) on the
        key columns ``on``, built clause by clause and run by :meth:`Merge.execute`.

        ``null_safe``: keys compared with ``<=>`` (a null key matches a null key) rather
        than ``=``. ``target_filter`` (on ``t.``) limits the target rows the MERGE looks
        at, e.g. to the partitions the source can touch."""
        return Merge(self, source, name, on, null_safe, target_filter)

    def merge(
        self,
        df: DataFrame,
        name: str,
        on: list[str],
        update: bool = True,
        delete_unmatched_predicate: str | None = None,
    ) -> None:
        """Upsert ``df`` into ``name`` on the key columns ``on`` (one commit); creates the
        table when it does not exist. ``update=False`` inserts new keys only;
        ``delete_unmatched_predicate`` deletes the target rows matching it that the
        source lacks."""
        if not self.exists(name):
            self.overwrite(df, name)
            return
        merge = self.merge_into(conform(df, name), name, on)
        if update:
            merge.when_matched_update()
        merge.when_not_matched_insert()
        if delete_unmatched_predicate:
            merge.when_not_matched_by_source_delete(delete_unmatched_predicate)
        merge.execute()

    def apply_changes(
        self,
        changes: DataFrame,
        name: str,
        target_filter: str | None = None,
        null_safe: bool = True,
        rows: int | None = None,
    ) -> None:
        """Apply row changes to ``name`` in one commit on its declared keys.

        ``changes``: the table's columns plus ``_op`` (``upsert`` inserts or replaces
        the row of its key, ``delete`` removes it); ``rows``: how many (counted here
        when None and it matters). A MERGE rewrites only the files holding a changed
        row; an unpartitioned table whose files the changes touch nearly all is
        rewritten whole instead (:meth:`_rewrite_pays`). ``target_filter`` and
        ``null_safe`` as in :meth:`merge_into`. Creates the table from the upserts when
        it does not exist.
        """
        schema = table_schema(name)
        if not self.exists(name):
            self.overwrite(changes.filter(F.col("_op") == "upsert").drop("_op"), name)
            return
        cols = schema.columns
        src = conform(changes, name, extra=True).select(*cols, "_op")
        if (
            target_filter is None
            and not schema.partition_by
            and self._rewrite_pays(name, src, rows)
        ):
            self._rewrite_with(src, name, null_safe)
            return
        (
            self.merge_into(
                src, name, schema.keys, null_safe=null_safe, target_filter=target_filter
            )
            .when_matched_delete("s._op = 'delete'")
            .when_matched_update(cols)
            .when_not_matched_insert(cols, "s._op = 'upsert'")
            .execute()
        )

    def _rewrite_pays(self, name: str, src: DataFrame, rows: int | None) -> bool:
        """Whether rewriting unpartitioned table ``name`` whole beats a MERGE of ``src``
        (``rows`` rows; counted when None): when the changes are at least a quarter as
        many as the table's files (spread over the keys, they then touch a fifth of the
        files or more, 1 - e^-1/4).

        A MERGE reads every row to find the matched ones and rewrites their files; on
        Sail 0.7.2 it took 10-12 s on 1M members' 4.7M xref rows (5 files) whether 10
        or 95k rows changed, where reading and writing the table whole took 2.3-3.0 s
        (members, 1M rows: 3.9-5.3 s against 1.9-2.0 s; identity edges, 4.5M rows:
        8.9-10.9 s against 2.3-3.3 s)."""
        files = self.delta_table(name).get_add_actions(flatten=True).num_rows
        if rows is None:
            rows = src.count()
        return rows * 4 >= files

    def _rewrite_with(self, src: DataFrame, name: str, null_safe: bool) -> None:
        """Table ``name`` rewritten in one commit: its rows whose key ``src`` does not
        hold (keys compared as a MERGE's ``null_safe`` would), and ``src``'s upserts.
        Undeclared columns the table holds keep their values (null on a new key), as a
        MERGE's update of the declared columns does."""
        schema = table_schema(name)
        current = self.read(name)
        kept = _by_keys(current, src.select(*schema.keys), schema.keys, null_safe, "left_anti")
        upserts = src.filter(F.col("_op") == "upsert").drop("_op")
        extras = [c for c in current.columns if c not in schema.columns]
        if extras:
            old = current.select(*schema.keys, *extras)
            upserts = _by_keys(upserts, old, schema.keys, null_safe, "left").drop(
                *[f"_r_{k}" for k in schema.keys]
            )
        rows = kept.unionByName(upserts, allowMissingColumns=True).select(*current.columns)
        self.overwrite(rows, name, conform_schema=False)

    def add_missing_columns(self, name: str, fill: dict[str, Column] | None = None) -> list[str]:
        """Give an existing table the declared columns it lacks in one commit: null, or
        computed from the row by ``fill`` (column -> expression).

        Sail cannot evolve a schema on write, so a column added to schemas/ after a
        lake was created would fail every later write to the table. Rows, extra
        columns and the declared partitioning are kept. Returns the columns added.
        """
        if not self.exists(name):
            return []
        current = self.read(name)
        schema = table_schema(name)
        missing = [c for c in schema.columns if c not in current.columns]
        if not missing:
            return []
        nulls = {c: (fill or {}).get(c, F.lit(None)) for c in missing}
        out = conform(current.withColumns(nulls), name, extra=True)

        def save(rows: DataFrame) -> None:
            writer = rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
            if schema.partition_by:
                writer = writer.partitionBy(*schema.partition_by)
            writer.save(self.path(name))

        write_retrying(out, save)
        _committed(self, name)
        return missing

    def version(self, name: str) -> int:
        return self.delta_table(name).version()

    def holds_rows(self, name: str) -> bool:
        """Whether table ``name`` may hold a row, from its Delta log alone (no data read):
        False when it does not exist or every file's statistics count no record; True
        when a file has rows or lacks the statistics."""
        if not self.exists(name):
            return False
        actions = self.delta_table(name).get_add_actions(flatten=True)
        if actions.num_rows == 0:
            return False
        if "num_records" not in actions.column_names:
            return True
        counts = actions.column("num_records").to_pylist()
        return any(n is None or n > 0 for n in counts)

    def never_null(self, name: str, column: str) -> bool:
        """Whether the Delta log's statistics show ``column`` without a null in every file
        of ``name`` (False when a file has no such statistics; True for no file)."""
        actions = self.delta_table(name).get_add_actions(flatten=True)
        if actions.num_rows == 0:
            return True
        counts = f"null_count.{column}"
        if counts not in actions.column_names:
            return False
        return all(n == 0 for n in actions.column(counts).to_pylist())

    def share_of_files_in_ranges(self, name: str, ranges: dict[str, tuple]) -> float:
        """The share of ``name``'s files whose statistics let a row fall within every
        ``column: (low, high)`` of ``ranges`` (a file without the statistics counts as
        one that may): what a filter on those ranges would still read, from the Delta
        log alone. 1.0 for a table without files."""
        actions = self.delta_table(name).get_add_actions(flatten=True)
        if actions.num_rows == 0:
            return 1.0
        may = [True] * actions.num_rows
        for column, (low, high) in ranges.items():
            lows, highs = f"min.{column}", f"max.{column}"
            if lows not in actions.column_names or highs not in actions.column_names:
                continue
            for i, (lo, hi) in enumerate(
                zip(actions.column(lows).to_pylist(), actions.column(highs).to_pylist(), strict=True)
            ):
                try:
                    if lo is not None and hi is not None and (hi < low or lo > high):
                        may[i] = False
                except TypeError:  # statistics of another type: the file may hold rows
                    continue
        return sum(may) / len(may)

    def tables(self) -> list[str]:
        """Every Delta table under the root, as ``layer/table`` (found by its ``_delta_log``,
        listing two levels: no walk through data files, local or object store)."""
        return storage.delta_tables(self.root)


def _by_keys(
    left: DataFrame, right: DataFrame, keys: list[str], null_safe: bool, how: str
) -> DataFrame:
    """``left`` joined ``how`` to ``right`` on ``keys``, compared with ``<=>`` (a null key
    matches a null key) when ``null_safe``, else ``=``. The right side's keys come back
    renamed ``_r_<key>``."""
    renamed = right.withColumnsRenamed({k: f"_r_{k}" for k in keys})
    condition = None
    for k in keys:
        left_key, right_key = F.col(k), F.col(f"_r_{k}")
        same = left_key.eqNullSafe(right_key) if null_safe else left_key == right_key
        condition = same if condition is None else condition & same
    return left.join(renamed, condition, how)


class Merge:
    """One ``MERGE INTO`` of a source into a Delta table, built clause by clause (after
    delta-rs's ``TableMerger``) and committed once by :meth:`execute`: the one place
    where MERGE statements are written. Clauses apply in the order they are added, as
    in SQL. The source travels with the statement (``spark.sql(sql, src=df)``): no temp
    view to create and drop, two round trips less on a Connect server.

    Sail and Apache Spark + delta-spark both run it; a Sail cluster that cannot ship a
    function to the writing stage gets the same MERGE again behind a shuffle
    (:func:`write_retrying`)."""

    def __init__(
        self,
        lake: Lake,
        source: DataFrame,
        name: str,
        on: list[str],
        null_safe: bool = True,
        target_filter: str | None = None,
    ):
        if not on:
            raise ValueError(f"a MERGE into {name} needs key columns")
        self.lake, self.source, self.name = lake, source, name
        equal = "<=>" if null_safe else "="
        self.condition = " AND ".join(f"t.`{c}` {equal} s.`{c}`" for c in on)
        if target_filter:
            self.condition += f" AND ({target_filter})"
        self.clauses: list[str] = []

    def _add(self, when: str, predicate: str | None, action: str) -> Merge:
        self.clauses.append(f"{when}{f' AND ({predicate})' if predicate else ''} THEN {action}")
        return self

    def when_matched_update(
        self, columns: list[str] | dict[str, str] | None = None, predicate: str | None = None
    ) -> Merge:
        """Update matched rows: every column (``None``), the listed columns from the
        source, or ``{column: SQL expression}``."""
        if columns is None:
            return self._add("WHEN MATCHED", predicate, "UPDATE SET *")
        sets = columns if isinstance(columns, dict) else {c: f"s.`{c}`" for c in columns}
        assign = ", ".join(f"`{c}` = {expr}" for c, expr in sets.items())
        return self._add("WHEN MATCHED", predicate, f"UPDATE SET {assign}")

    def when_matched_delete(self, predicate: str | None = None) -> Merge:
        return self._add("WHEN MATCHED", predicate, "DELETE")

    def when_not_matched_insert(
        self, columns: list[str] | None = None, predicate: str | None = None
    ) -> Merge:
        """Insert source rows without a match: every column (``None``) or those listed."""
        if columns is None:
            return self._add("WHEN NOT MATCHED", predicate, "INSERT *")
        names = ", ".join(f"`{c}`" for c in columns)
        values = ", ".join(f"s.`{c}`" for c in columns)
        return self._add("WHEN NOT MATCHED", predicate, f"INSERT ({names}) VALUES ({values})")

    def when_not_matched_by_source_delete(self, predicate: str | None = None) -> Merge:
        return self._add("WHEN NOT MATCHED BY SOURCE", predicate, "DELETE")

    def statement(self) -> str:
        """The SQL, with ``{src}`` where the source goes."""
        if not self.clauses:
            raise ValueError(f"a MERGE into {self.name} needs at least one WHEN clause")
        target = _braces(self.lake.path(self.name))
        return (
            f"MERGE INTO delta.`{target}` AS t USING {{src}} AS s "
            f"ON {_braces(self.condition)} " + " ".join(_braces(c) for c in self.clauses)
        )

    def execute(self) -> None:
        """Run the MERGE: one Delta commit (after the metadata commit that switches a
        declared table's deletion vectors on, the first time only)."""
        self.lake.enable_deletion_vectors(self.name)
        sql = self.statement()
        write_retrying(self.source, lambda src: self.lake.spark.sql(sql, src=src))
        _committed(self.lake, self.name)


def _braces(text: str) -> str:
    """``text`` inside a ``spark.sql`` statement formatted with DataFrame arguments."""
    return text.replace("{", "{{").replace("}", "}}")


class ParquetScratch:
    """``mat(df, name)``: write an intermediate once as Parquet under ``base`` (a local
    folder or an object-store prefix) and read it back, so a plan used several times is
    computed once (Sail caches nothing). :meth:`arrow` brings a table computed on the
    driver into the engine the same way."""

    def __init__(self, base: str | Path) -> None:
        self.base = base

    def __call__(self, df: DataFrame, name: str) -> DataFrame:
        path = storage.join(self.base, name)
        df.write.mode("overwrite").options(**parquet_options(df.sparkSession)).parquet(path)
        return _read_back(path, df)

    def slices(self, parts: Iterable[DataFrame], name: str) -> DataFrame:
        """Each of ``parts`` (same columns) written in turn under ``base/name``, one
        query each, and read back as one table: a big intermediate computed in slices,
        so that no query holds the memory of all of it (jobs.identity.fuzzy). One
        folder, not a union of several: Sail 0.7.2 panicked reading such a union."""
        path = storage.join(self.base, name)
        first: DataFrame | None = None
        for part in parts:
            mode = "append" if first is not None else "overwrite"
            part.write.mode(mode).options(**parquet_options(part.sparkSession)).parquet(path)
            first = first if first is not None else part
        if first is None:
            raise ValueError(f"{name}: no slice to write")
        return _read_back(path, first)

    def arrow(self, spark: SparkSession, table: pa.Table, name: str) -> DataFrame:
        """``table`` written with pyarrow as one Parquet file under ``base/name`` and read
        by the engine: a driver's result of any size (``createDataFrame`` sends it inside
        one message, which Spark Connect caps at 128 MiB). Each call gets its own folder,
        so a name used twice never overwrites a table still being read."""
        path = storage.join(self.base, name, uuid.uuid4().hex)
        fs, inner = storage.filesystem(path)
        storage.make_dirs(path)
        pq.write_table(table, f"{inner}/part-0.parquet", filesystem=fs)
        return spark.read.parquet(path)


def _read_back(path: str, written: DataFrame) -> DataFrame:
    """The Parquet folder ``path`` that ``written`` (or slices of its columns) went to."""
    if any(n.endswith(".parquet") for n, folder in storage.list_dir(path) if not folder):
        # Read under the files' own schema: under the one given, Sail 0.7.2 panicked
        # hashing two dictionary-encoded columns at once ("Trying to access an element
        # at index 1 from a StringArray of length 1": the identity step's node ids on
        # a lake of two CRM records sharing a phone, tests/identity/test_lone.py).
        return written.sparkSession.read.parquet(path)
    # An empty result may leave no file to infer the schema from: it travels along.
    return written.sparkSession.read.schema(written.schema).parquet(path)


def parquet_materialiser(base: str | Path) -> ParquetScratch:
    """A :class:`ParquetScratch` under ``base``."""
    return ParquetScratch(base)


def read_state_row(lake: Lake, name: str) -> tuple[dt.date, str, dict] | None:
    """(as_of_date, run_id, detail) of a one-row state table; None when there is none or
    it cannot be read (the caller then recomputes in full).

    Read with delta-rs, like :meth:`Lake.exists` and :meth:`Lake.version`: one row needs
    no Spark job (0.2-1 s on a JVM engine)."""
    if not lake.exists(name):
        return None
    rows = lake.delta_table(name).to_pyarrow_table(columns=["as_of_date", "run_id", "detail"])
    if rows.num_rows != 1:
        return None
    r = rows.to_pylist()[0]
    try:
        return r["as_of_date"], r["run_id"], json.loads(r["detail"])
    except (TypeError, ValueError):
        return None


def write_state_row(lake: Lake, name: str, as_of: dt.date, run_id: str, detail: dict) -> None:
    """Replace a one-row state table in one commit; everything but the date and run id
    sits in ``detail`` (JSON)."""
    df = lake.spark.createDataFrame(
        [(as_of, run_id, json.dumps(detail, sort_keys=True, default=str))],
        "as_of_date date, run_id string, detail string",
    )
    lake.overwrite(df, name, conform_schema=False)


def deleted_rows(table: DeltaTable) -> int:
    """The rows of delta-rs ``table``'s version that deletion vectors mark deleted (read
    from the deletion vector files, no data file); 0 for a table without the feature."""
    import pyarrow.compute as pc

    if "deletionVectors" not in (table.protocol().reader_features or []):
        return 0
    vectors = pa.table(table.deletion_vectors().read_all()).column("selection_vector")
    if len(vectors) == 0:
        return 0
    return int(pc.sum(pc.invert(pc.list_flatten(vectors))).as_py() or 0)


def live_rows(table: DeltaTable) -> int:
    """The rows of delta-rs ``table``'s version from its Delta log: the files' record
    counts (their statistics; a file without them counts none) less the rows deletion
    vectors mark deleted, which the statistics still count."""
    actions = table.get_add_actions(flatten=True)
    if actions.num_rows == 0 or "num_records" not in actions.column_names:
        return 0
    counts = actions.column("num_records").to_pylist()
    return sum(c or 0 for c in counts) - deleted_rows(table)


def delta_arrow(
    path: str,
    columns: list[str] | None = None,
    version: int | None = None,
    storage_options: dict[str, str] | None = None,
) -> pa.Table:
    """The rows of the Delta table at ``path`` (at ``version``, default the latest) as
    Arrow, typed as the table declares. Deletion vectors are applied: delta-rs's own
    reader (DataFusion) instead of its pyarrow dataset, which refuses a table with them."""
    from deltalake import DeltaTable, QueryBuilder

    table = DeltaTable(path, version=version, storage_options=storage_options)
    schema = pa.schema(table.schema().to_arrow())
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns])
    if "deletionVectors" not in (table.protocol().reader_features or []):
        return table.to_pyarrow_table(columns=columns)
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in schema.names)
    reader = QueryBuilder().register("t", table).execute(f"SELECT {select} FROM t")
    return pa.table(reader.read_all()).cast(schema)
