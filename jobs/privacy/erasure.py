"""Erasure (``cdp forget``): remove one person from every layer, for good.

Steps, all under the lake's lock:

1. **Resolve** the request (``--member``, ``--phone``, ``--email`` or ``--crm-id``)
   to the person's member_id(s) (retired ids merged into them included) and every
   source identity of theirs: ``silver/member_xref`` says which CRM records, web
   accounts, devices, cards and till phones belong to the member; their bronze
   CRM rows and ``restricted/member_pii`` add the phones, e-mails and ID cards.
   A phone or e-mail that belongs to more than one member is refused (erasing a
   whole family because they share a number is not what was asked): use
   ``--member``. Before identity resolution has run, the request's identifiers
   and the CRM rows they match are used directly.
2. **Record** the request durably before changing anything: the person's member ids
   and identifiers go to ``<work>/erasure_requests/<request_id>.json``
   (jobs.privacy.erasure_journal), then the keyed hashes of all their identifiers to
   ``restricted/suppression_list``: from then on ingestion drops matching rows of any
   file taken in (jobs.privacy.suppression), re-sent originals included.
3. **Delete** their rows: bronze (POS lines of their cards/phones, web events of
   their account/devices and the redelivered copies, CRM rows of their crm_ids),
   quarantine (rows whose ``_raw`` contains any of their identifiers), every silver,
   gold, restricted and meta table with a member id column, identity edges and
   the work folder's leftovers (staging files of crashed runs, temporary export
   folders of killed runs). Each table is rewritten with ``Lake.replace_where`` over
   the partitions that held them (one Delta commit per table, so readers never see
   half an erasure). Exports: the person's rows are removed from every published
   export file and the manifest's row counts and checksums are rewritten.
4. **Recompute** the silver and gold steps for the latest ``as_of_date`` in gold
   (jobs.pipeline.run_pipeline), so aggregates no longer count them.
5. **Vacuum** every table that changed (delta-rs, retention 0) and drop the Delta
   log before the current version (checkpoint, then metadata cleanup), so neither
   time travel nor the log's column statistics can give the values back.
6. **Receipt**: ``<work>/erasure_receipts/<request_id>.json`` with the times, every
   attempt (run id, outcome), the tables and row counts removed, and no personal
   data (no identifiers, no member id); then the request's record is deleted.

Every phase is idempotent and its completion is recorded, so a ``cdp forget`` killed
anywhere is finished by running it again (the same request finds its record, and any
``cdp forget`` finishes the interrupted ones first): the lake ends as after an
uninterrupted erasure, and the receipt counts each row once, under the attempt that
removed it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import importlib.util
import io
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs import lake_state, storage
from jobs.config import Settings
from jobs.context import RunContext
from jobs.privacy import erasure_journal
from jobs.privacy.erasure_journal import PHASES, ErasureRequest
from jobs.privacy.pii import hmac_col, hmac_py
from jobs.privacy.suppression import (
    TABLE as SUPPRESSION_TABLE,
)
from jobs.privacy.suppression import (
    normalise_col,
    normalise_py,
    suppression_rows,
)
from jobs.schemas import table_schema
from jobs.sources import SOURCES, Source

log = logging.getLogger(__name__)

# Columns that hold a member id, in any table outside bronze/quarantine.
MEMBER_COLUMNS = ("member_id", "merged_into", "old_member_id", "new_member_id")
# Steps recomputed after an erasure: everything that reads bronze and silver.
RECOMPUTE_FROM = "identity"
# xref source -> identifier type of the suppression list.
XREF_TYPES = {
    "crm": "crm_id",
    "web_user": "web_user",
    "web_anon": "web_anon",
    "pos_card": "card",
    "pos_phone": "phone_hash",
}


class ErasureError(RuntimeError):
    """The request cannot be carried out as asked (nothing matches, ambiguous, ...)."""


@dataclasses.dataclass
class Person:
    """Everything that identifies one person to erase (in memory only, never written)."""

    member_ids: set[str] = dataclasses.field(default_factory=set)
    # Normalised raw values by type: phone, email, id_card, card, crm_id, web_user, web_anon.
    ids: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    # Keyed hashes of till phones that only silver/member_xref knows (pos_phone keys).
    phone_hashes: set[str] = dataclasses.field(default_factory=set)

    def add(self, id_type: str, values) -> None:
        self.ids.setdefault(id_type, set()).update(v for v in values if v)

    def get(self, id_type: str) -> list[str]:
        return sorted(self.ids.get(id_type, ()))

    def all_phone_hashes(self, key: bytes) -> list[str]:
        return sorted(self.phone_hashes | {hmac_py(p, key) for p in self.get("phone")})


# ---- resolution ---------------------------------------------------------------------


def _values(df: DataFrame, column: str, limit: int = 10_000) -> set[str]:
    """Distinct non-null values of one column of a person-sized DataFrame."""
    rows = df.select(F.col(column).cast("string").alias("v")).where("v IS NOT NULL").distinct()
    return {r.v for r in rows.limit(limit).collect()}


def _follow_merges(history: DataFrame, ids: set[str]) -> set[str]:
    """Map retired member ids to the id they were finally merged into (chains followed)."""
    out = set(ids)
    for _ in range(10):
        if not out:
            break
        rows = history.where(F.col("member_id").isin(sorted(out))).collect()
        mapping = {r.member_id: r.merged_into for r in rows if r.merged_into}
        nxt = {mapping.get(i, i) for i in out}
        if nxt == out:
            break
        out = nxt
    return out


def resolve(
    ctx: RunContext,
    member: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    crm_id: str | None = None,
) -> Person:
    """The person behind one request, with all their identifiers (see module docstring)."""
    lake, key = ctx.lake, ctx.pii_key
    person = Person()
    seeds: dict[str, str] = {}
    for id_type, raw in (("phone", phone), ("email", email), ("crm_id", crm_id)):
        if raw is None:
            continue
        value = normalise_py(id_type, raw)
        if value is None:
            raise ErasureError(f"--{id_type.replace('_', '-')}: not a valid {id_type}")
        seeds[id_type] = value
        person.add(id_type, [value])
    if not seeds and not member:
        raise ErasureError("say who to forget: --member, --phone, --email or --crm-id")

    xref = lake.read("silver/member_xref")
    members = lake.read("silver/members")
    pii = lake.read("restricted/member_pii")
    crm = lake.read("bronze/crm_members")
    history = lake.read("silver/member_id_history")

    found: set[str] = set()
    if member:
        known = (
            xref.where(F.col("member_id") == member).limit(1).count()
            + members.where(F.col("member_id") == member).limit(1).count()
            + history.where(F.col("member_id") == member).limit(1).count()
        )
        if not known:
            raise ErasureError(f"--member: no such member_id {member!r}")
        found |= _follow_merges(history, {member})
    crm_seed = set(person.get("crm_id"))
    if "phone" in seeds:
        p = seeds["phone"]
        h = hmac_py(p, key)
        found |= _values(
            xref.where((F.col("source") == "pos_phone") & (F.col("source_key") == h)), "member_id"
        )
        found |= _values(members.where(F.col("phone_hash") == h), "member_id")
        found |= _values(pii.where(F.col("phone") == p), "member_id")
        crm_seed |= _values(crm.where(normalise_col("phone", F.col("phone")) == p), "crm_id")
    if "email" in seeds:
        e = seeds["email"]
        found |= _values(members.where(F.col("email_hash") == hmac_py(e, key)), "member_id")
        found |= _values(pii.where(F.col("email") == e), "member_id")
        crm_seed |= _values(crm.where(normalise_col("email", F.col("email")) == e), "crm_id")
    if crm_seed:
        found |= _values(
            xref.where((F.col("source") == "crm") & F.col("source_key").isin(sorted(crm_seed))),
            "member_id",
        )
    found = _follow_merges(history, found)
    if len(found) > 1 and not member:
        raise ErasureError(
            f"the identifier given belongs to {len(found)} members; "
            "erase them one by one with --member after checking who is who"
        )
    if not found and not crm_seed and not seeds:
        raise ErasureError("nobody matches the request")

    # Retired ids merged into the person are theirs too.
    retired = _values(history.where(F.col("merged_into").isin(sorted(found))), "member_id")
    all_ids = sorted(found | retired)
    person.member_ids = set(all_ids)

    mine = xref.where(F.col("member_id").isin(all_ids)) if all_ids else xref.limit(0)
    for r in mine.select("source", "source_key").distinct().collect():
        id_type = XREF_TYPES.get(r.source)
        if id_type == "phone_hash":
            person.phone_hashes.add(r.source_key)
        elif id_type:
            person.add(id_type, [r.source_key])
    # Without identity resolution (or for an unlinked CRM record) the CRM rows found
    # from the request's identifiers are the person's.
    if not all_ids:
        person.add("crm_id", crm_seed)

    # The raw values behind their records: CRM rows, the restricted copy, till phones.
    crm_rows = crm.where(F.col("crm_id").isin(person.get("crm_id") or [""]))
    for id_type, column in (
        ("phone", "phone"),
        ("email", "email"),
        ("id_card", "id_card_no"),
        ("card", "member_card_no"),
        ("web_user", "web_user_id"),
    ):
        person.add(
            id_type, _values(crm_rows.select(normalise_col(id_type, F.col(column)).alias("v")), "v")
        )
    if all_ids:
        mine_pii = pii.where(F.col("member_id").isin(all_ids))
        person.add("phone", _values(mine_pii, "phone"))
        person.add("email", _values(mine_pii.select(F.lower(F.trim("email")).alias("e")), "e"))
        person.add("id_card", _values(mine_pii.select(F.upper("id_card_no").alias("i")), "i"))
    if person.phone_hashes:
        pos = lake.read("bronze/pos_lines").select(
            normalise_col("phone", F.col("phone")).alias("p")
        )
        hashes = sorted(person.phone_hashes)
        person.add("phone", _values(pos.where(hmac_col(F.col("p"), key).isin(hashes)), "p"))
    if person.get("web_user"):
        # Devices that logged in to their account (also before identity has run).
        web = lake.read("bronze/web_events")
        person.add(
            "web_anon",
            _values(web.where(F.col("user_id").isin(person.get("web_user"))), "anonymous_id"),
        )
    return person


# ---- deleting rows --------------------------------------------------------------------


def _lit(v) -> str:
    if v is None:
        return "NULL"
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def erase_rows(
    ctx: RunContext,
    name: str,
    flag: Callable[[DataFrame], Column],
    journal: ErasureRequest | None = None,
) -> int:
    """Remove the rows of table ``name`` for which ``flag(df)`` is true; return how many.

    One Delta commit: only the partitions that hold such rows are rewritten
    (``replaceWhere`` on the partition values), an unpartitioned table as a whole, and
    so is a table with deletion vectors: rows a MERGE replaced stay in its files, only
    marked deleted, in any partition (an order's copy from before its member changed),
    and a whole rewrite leaves none of them in a file of the new version (the erasure's
    vacuum then deletes the old files). ``journal``: the request's record, told before
    the commit (rows, version) and after.
    """
    lake = ctx.lake
    if not lake.exists(name):
        return 0
    df = lake.read(name)
    hits = df.where(F.coalesce(flag(df), F.lit(False)))
    n = hits.count()
    if n == 0:
        return 0
    if journal is not None:
        journal.before_write("table", name, n, lake.version(name))
    parts = lake.delta_table(name).metadata().partition_columns
    if parts and not lake.has_deletion_vectors(name):
        values = [tuple(r) for r in hits.select(*parts).distinct().collect()]
        predicate = " OR ".join(
            "("
            + " AND ".join(
                f"`{c}` IS NULL" if v is None else f"`{c}` = {_lit(v)}"
                for c, v in zip(parts, vals, strict=True)
            )
            + ")"
            for vals in values
        )
        scope = df.where(F.expr(predicate))
        kept = scope.where(~F.coalesce(flag(scope), F.lit(False)))
        lake.replace_where(kept, name, predicate, conform_schema=False)
    else:
        kept = df.where(~F.coalesce(flag(df), F.lit(False)))
        lake.overwrite(kept, name, conform_schema=False)
    if journal is not None:
        journal.after_write()
    return n


def _isin(column: str, values) -> Callable[[DataFrame], Column]:
    vals = sorted(set(values))
    return lambda df: F.col(column).isin(vals) if vals else F.lit(False)


def _escape_regex(value: str) -> str:
    return "".join("\\" + c if c in r"\.^$|?*+()[]{}" else c for c in value)


def raw_matcher(person: Person) -> Callable[[DataFrame], Column]:
    """True for quarantined rows whose ``_raw`` text holds one of the person's identifiers.

    Tokens must stand alone (not inside a longer id), case-insensitive; phones are
    matched on the text without separators, so ``+86 138-0013-8000`` matches too.
    """
    tokens = set()
    for id_type in ("email", "id_card", "card", "crm_id", "web_user", "web_anon"):
        tokens |= set(person.get(id_type))
    phones = person.get("phone")

    def flag(df: DataFrame) -> Column:
        cond = F.lit(False)
        if tokens:
            alt = "|".join(_escape_regex(t) for t in sorted(tokens))
            cond = cond | F.col("_raw").rlike(f"(?i)(^|[^a-z0-9_])({alt})([^a-z0-9_]|$)")
        if phones:
            digits = F.regexp_replace(F.col("_raw"), r"[\s\-.()+\u3000]", "")
            cond = cond | digits.rlike(f"(^|[^0-9])(0086|86)?({'|'.join(phones)})([^0-9]|$)")
        return cond

    return flag


# Identifier types a source's bronze rows hold as keyed at the till: compared in canonical form.
_CANONICAL_TYPES = ("card", "phone")


def bronze_flag(src: Source, person: Person, key: bytes) -> Callable[[DataFrame], Column]:
    """True for the rows of ``src`` (bronze, its duplicates, silver copies) that are the
    person's: one of its ``pii_columns`` holds one of their identifiers (a till phone
    also by its keyed hash, for numbers only silver/member_xref knows)."""
    phone_hashes = sorted(person.all_phone_hashes(key))

    def flag(df: DataFrame) -> Column:
        cond = F.lit(False)
        for id_type, column in src.pii_columns.items():
            value = F.col(column)
            if id_type in _CANONICAL_TYPES:
                value = normalise_col(id_type, value)
            values = sorted(person.get(id_type))
            if values:
                cond = cond | value.isin(values)
            if id_type == "phone" and phone_hashes:
                cond = cond | hmac_col(value, key).isin(phone_hashes)
        return cond

    return flag


def erase_everywhere(
    ctx: RunContext, person: Person, journal: ErasureRequest | None = None
) -> dict[str, int]:
    """Delete the person's rows from every table of the lake; table -> rows removed.

    Idempotent: run again after a crash, it removes what is left (``journal`` counts).
    """
    lake, key = ctx.lake, ctx.pii_key
    removed: dict[str, int] = {}

    def erase(name: str, flag: Callable[[DataFrame], Column]) -> None:
        n = erase_rows(ctx, name, flag, journal)
        if n:
            removed[name] = removed.get(name, 0) + n

    cards, users, anons = person.get("card"), person.get("web_user"), person.get("web_anon")
    phone_hashes = person.all_phone_hashes(key)

    # Bronze, source by source. Duplicates tables hold no identifier, only the key of
    # the row they repeat: their rows go first, found through the rows they copy.
    for src in SOURCES.values():
        flag = bronze_flag(src, person, key)
        dup_table = src.dedup.duplicates_table
        if dup_table and lake.exists(src.bronze_table) and len(src.dedup.key) == 1:
            rows = lake.read(src.bronze_table)
            (key_col,) = src.dedup.key
            copied = sorted(_values(rows.where(flag(rows)), key_col, limit=1_000_000))
            erase(dup_table, _isin(key_col, copied))
        erase(src.bronze_table, flag)

    # Quarantine: the original text of rejected rows.
    matcher = raw_matcher(person)
    for name in lake.tables():
        if name.startswith("quarantine/"):
            erase(name, matcher)

    # Every other table that carries a member id (silver, gold, restricted, meta).
    members = sorted(person.member_ids)
    # Order lines hold no member, only their order's key: they go first, found through
    # the person's orders (which the loop below removes: a rerun after a crash between
    # the two still finds the lines).
    erase(ORDER_LINES, _order_lines_of(lake, members))
    xref_keys = {
        "crm": person.get("crm_id"),
        "web_user": users,
        "web_anon": anons,
        "pos_card": cards,
        "pos_phone": phone_hashes,
    }

    def identity_flag(source_col: str, key_col: str) -> Callable[[DataFrame], Column]:
        def flag(df: DataFrame) -> Column:
            cond = F.lit(False)
            for source, keys in xref_keys.items():
                if keys:
                    cond = cond | ((F.col(source_col) == source) & F.col(key_col).isin(keys))
            return cond

        return flag

    for name in lake.tables():
        layer = name.split("/")[0]
        if layer in ("bronze", "quarantine") or name == SUPPRESSION_TABLE:
            continue
        cols = set(lake.read(name).columns)
        conds: list[Callable[[DataFrame], Column]] = []
        for c in MEMBER_COLUMNS:
            if c in cols and members:
                conds.append(_isin(c, members))
        if {"source", "source_key"} <= cols:  # silver/member_xref: anonymous devices too
            conds.append(identity_flag("source", "source_key"))
        if {"src_source", "src_key", "dst_source", "dst_key"} <= cols:  # identity edges
            conds.append(identity_flag("src_source", "src_key"))
            conds.append(identity_flag("dst_source", "dst_key"))
        for src in SOURCES.values():  # silver rows keyed by a source's own identifiers
            if layer == "silver" and set(src.pii_columns.values()) <= cols:
                conds.append(bronze_flag(src, person, key))
        if conds:
            erase(name, lambda df, conds=conds: _any(df, conds))
    return removed


ORDER_LINES, ORDERS = "silver/order_lines", "silver/orders"


def _order_lines_of(lake, members: list[str]) -> Callable[[DataFrame], Column]:
    """True for the silver/order_lines rows of an order of ``members`` in silver/orders
    (matched on order_id and channel)."""
    keys: set[str] = set()
    if members and lake.exists(ORDERS):
        orders = lake.read(ORDERS).where(F.col("member_id").isin(members))
        keys = _values(orders.select(_order_key().alias("k")), "k", limit=1_000_000)
    return lambda df: _order_key().isin(sorted(keys)) if keys else F.lit(False)


def _order_key() -> Column:
    """An order's key (order_id, channel) as one text."""
    return F.concat_ws("\x1f", "order_id", "channel")


def _any(df: DataFrame, conds: list[Callable[[DataFrame], Column]]) -> Column:
    out = F.lit(False)
    for c in conds:
        out = out | F.coalesce(c(df), F.lit(False))
    return out


# ---- exports ----------------------------------------------------------------------------


def scrub_exports(
    exports: Path, person: Person, journal: ErasureRequest | None = None
) -> dict[str, int]:
    """Remove the person's rows from every published export file; file -> rows removed.

    Rows are matched on ``member_id`` (and ``crm_id`` where a file has it); other rows
    keep their exact text. Then every manifest entry whose file no longer matches its
    SHA-256 is rewritten from the file (rows, bytes, SHA-256), with the per-segment
    counts: so a run killed between a file and its manifest is repaired by the next.
    """
    from jobs.exports.files import sha256_file

    members = set(person.member_ids)
    crm_ids = set(person.get("crm_id"))
    out: dict[str, int] = {}
    if not exports.exists():
        return out
    for folder in sorted(p for p in exports.iterdir() if p.is_dir()):
        for f in sorted(folder.iterdir()):
            if f.suffix not in (".csv", ".parquet"):
                continue
            key = f"{folder.name}/{f.name}"

            def before(rows: int, f: Path = f, key: str = key) -> None:
                if journal is not None:
                    journal.before_write("export", key, rows, sha256_file(f))

            scrub = _scrub_csv if f.suffix == ".csv" else _scrub_parquet
            n = scrub(f, members, crm_ids, before)
            if n:
                out[key] = n
                if journal is not None:
                    journal.after_write()
        _refresh_manifest(folder)
    return out


def _refresh_manifest(folder: Path) -> None:
    """Rewrite the manifest entries of files that changed (rows counted from the file)."""
    import pyarrow.parquet as pq

    from jobs.exports.files import sha256_file

    manifest = folder / "manifest.json"
    if not manifest.exists():
        return
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    rows: dict[str, int] = {}
    for entry in doc.get("files", []):
        p = folder / str(entry.get("path"))
        if not p.is_file() or entry.get("sha256") == sha256_file(p):
            continue
        if p.suffix == ".parquet":
            n = pq.ParquetFile(p).metadata.num_rows
        else:
            with open(p, "rb") as fh:
                n = max(sum(1 for _ in fh) - 1, 0)  # export values hold no line breaks
        entry.update(rows=n, bytes=p.stat().st_size, sha256=sha256_file(p))
        rows[p.name] = n
    if not rows:
        return
    for seg in doc.get("segments", []):
        name = seg.get("name")
        for kind, fname in (
            ("rows", f"{name}.parquet"),
            ("entered", f"{name}.entered.csv"),
            ("exited", f"{name}.exited.csv"),
        ):
            if fname in rows and kind in seg:
                seg[kind] = rows[fname]
    tmp = manifest.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, manifest)


def _pa_strings(values: set[str]):
    import pyarrow as pa

    return pa.array(sorted(values), pa.string())


def _scrub_parquet(
    path: Path, members: set[str], crm_ids: set[str], before: Callable[[int], None]
) -> int:
    """Drop the rows whose member_id / crm_id is the person's; ``before(n)`` precedes the swap."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    mask = None
    for col, values in (("member_id", members), ("crm_id", crm_ids)):
        if col in table.column_names and values:
            hit = pc.is_in(table[col], value_set=_pa_strings(values))
            mask = hit if mask is None else pc.or_(mask, hit)
    if mask is None:
        return 0
    mask = pc.fill_null(mask, False)
    n = int(pc.sum(mask).as_py() or 0)
    if n:
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table.filter(pc.invert(mask)), tmp)
        before(n)
        os.replace(tmp, path)
    return n


def _scrub_csv(
    path: Path, members: set[str], crm_ids: set[str], before: Callable[[int], None]
) -> int:
    """Drop the CSV records whose member_id / crm_id is the person's; keep other lines as they are."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    header = next(csv.reader([lines[0]]))
    idx = [i for i, c in enumerate(header) if (c == "member_id" and members)]
    idx_crm = [i for i, c in enumerate(header) if (c == "crm_id" and crm_ids)]
    if not idx and not idx_crm:
        return 0
    kept, n = [lines[0]], 0
    # Export values never contain line breaks, so a physical line is one record.
    for line in lines[1:]:
        rec = next(csv.reader(io.StringIO(line)), [])
        hit = any(i < len(rec) and rec[i] in members for i in idx) or any(
            i < len(rec) and rec[i] in crm_ids for i in idx_crm
        )
        if hit:
            n += 1
        else:
            kept.append(line)
    if n:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        before(n)
        os.replace(tmp, path)
    return n


def _scrub_exports_at(
    exports: Path | str, person: Person, journal: ErasureRequest | None = None
) -> dict[str, int]:
    """scrub_exports on a local folder, or on a local copy of an object-store prefix
    whose changed files are uploaded back (jobs.storage.local_copy)."""
    with storage.local_copy(exports) as local:
        return scrub_exports(local, person, journal)


# ---- vacuum -----------------------------------------------------------------------------


def purge_history(path: str) -> dict:
    """Make older versions of one Delta table unrecoverable.

    Vacuum with retention 0 deletes every data file the current version does not
    use; then a checkpoint at the current version and a metadata cleanup with a
    zero log retention delete the older commit files, whose column statistics
    (min/max values) would otherwise still show identifiers. The table's own log
    retention is put back afterwards.
    """
    from deltalake import DeltaTable

    def load() -> DeltaTable:
        return DeltaTable(path, storage_options=storage.delta_storage_options(path))

    table = load()
    removed = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    table = load()
    config = dict(table.metadata().configuration)
    previous = config.get("delta.logRetentionDuration")
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    table = load()
    table.create_checkpoint()
    table.cleanup_metadata()
    table = load()
    table.alter.set_table_properties({"delta.logRetentionDuration": previous or "interval 30 days"})
    checkpoint = table.version() - 1
    log_dir = storage.join(path, "_delta_log")
    # Older checkpoints and Spark's per-version .crc files describe removed versions.
    for name, _ in storage.list_dir(log_dir):
        stem, suffix = name.split(".")[0], name.rpartition(".")[2]
        if stem.isdigit() and int(stem) < checkpoint and suffix in ("crc", "parquet", "json"):
            storage.remove_file(storage.join(log_dir, name))
    return {"files_vacuumed": len(removed), "version": table.version()}


# ---- the request -----------------------------------------------------------------------


def _latest_gold_date(ctx: RunContext) -> dt.date | None:
    if not ctx.lake.exists("gold/kpi_daily"):
        return None
    row = ctx.lake.read("gold/kpi_daily").agg(F.max("as_of_date").alias("d")).first()
    return row.d if row else None


def _recompute_steps():
    from jobs.pipeline import STEPS

    names = [s.name for s in STEPS]
    chosen = []
    for s in STEPS[names.index(RECOMPUTE_FROM) :]:
        module = s.target.partition(":")[0]
        if importlib.util.find_spec(module) is not None:
            chosen.append(s)
    return chosen


def _scrub_work(ctx: RunContext) -> int:
    """Delete the staging folders left by crashed runs (raw landing rows), the scratch
    silver of backfills (jobs.silver.backfill: a copy of restricted/member_pii) and the
    steps' scratch tables of crashed runs (identity's hold bronze CRM rows)."""
    lake = ctx.settings.paths.lake
    scratch = storage.join(lake_state.state_dir(lake), "scratch")
    roots = [lake_state.staging_root(lake), storage.join(lake_state.state_dir(lake), "backfill")]
    roots += [storage.join(scratch, step) for step, _ in storage.list_dir(scratch)]
    n = 0
    for root in roots:
        for name, _ in storage.list_dir(root):
            if name != ctx.run_id:
                storage.remove_tree(storage.join(root, name))
                n += 1
    return n


def _journal_home(settings: Settings) -> Path:
    """Where pending erasure requests are recorded: the lake's state folder, so any run
    on the lake finishes them; for an object-store lake (the journal is written with
    local fsync and rename) the work folder of the machine that runs ``cdp forget``."""
    lake = settings.paths.lake
    return settings.paths.work if storage.is_remote(lake) else Path(lake_state.state_dir(lake))


# Request arguments, in the order they are listed on a receipt.
REQUEST_KINDS = ("member", "phone", "email", "crm_id")


def request_key(asked: dict[str, str], key: bytes) -> str:
    """Keyed hash of a request's normalised arguments: the same command run again
    finds its pending request; the record holds no readable request."""
    text = "&".join(f"{k}={asked[k]}" for k in REQUEST_KINDS if k in asked)
    return hmac_py(text, key)


def _normalised_request(**given: str | None) -> dict[str, str]:
    """The request's arguments in canonical form (ErasureError when one is invalid)."""
    asked: dict[str, str] = {}
    for kind in REQUEST_KINDS:
        raw = given.get(kind)
        if raw is None:
            continue
        value = raw.strip() if kind == "member" else normalise_py(kind, raw)
        if not value:
            raise ErasureError(f"--{kind.replace('_', '-')}: not a valid {kind}")
        asked[kind] = value
    return asked


def record_request(ctx: RunContext, asked: dict[str, str], person: Person) -> ErasureRequest:
    """Write the pending request (the person's identifiers included) before any change."""
    started = dt.datetime.now(dt.UTC)
    request_id = f"erase-{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    folder = erasure_journal.requests_dir(_journal_home(ctx.settings))
    req = ErasureRequest(
        path=folder / f"{request_id}.json",
        request_id=request_id,
        request_key=request_key(asked, ctx.pii_key),
        requested_by=[k for k in REQUEST_KINDS if k in asked],
        requested_at=started.isoformat(timespec="seconds"),
        member_ids=sorted(person.member_ids),
        ids={k: sorted(v) for k, v in sorted(person.ids.items()) if v},
        phone_hashes=sorted(person.phone_hashes),
        versions_before={t: ctx.lake.version(t) for t in ctx.lake.tables()},
    )
    req.save()
    return req


def _person_of(req: ErasureRequest) -> Person:
    return Person(
        member_ids=set(req.member_ids),
        ids={k: set(v) for k, v in req.ids.items()},
        phone_hashes=set(req.phone_hashes),
    )


def _settle(ctx: RunContext, req: ErasureRequest) -> None:
    """Did the write a killed attempt was making commit? (see jobs.privacy.erasure_journal)"""
    from jobs.exports.files import sha256_file

    w = req.in_flight
    if w is None:
        return
    if w["kind"] == "table":
        committed = ctx.lake.exists(w["name"]) and ctx.lake.version(w["name"]) != w["token"]
    else:
        with storage.local_copy(ctx.settings.paths.exports) as exports:
            f = exports / w["name"]
            committed = not f.exists() or sha256_file(f) != w["token"]
    req.settle_in_flight(committed)


def _suppress(ctx: RunContext, req: ErasureRequest, person: Person) -> None:
    """Keyed hashes of all the person's identifiers into the suppression list (idempotent)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ids = {k: set(v) for k, v in person.ids.items()}
    rows = suppression_rows(ids, ctx.pii_key, req.request_id, now)
    rows += [("phone", h, req.request_id, now) for h in sorted(person.phone_hashes)]
    if rows:
        schema = table_schema(SUPPRESSION_TABLE).struct
        ctx.lake.merge(
            ctx.spark.createDataFrame(rows, schema),
            SUPPRESSION_TABLE,
            on=["id_type", "value_hash"],
            update=False,
        )


def _erase(ctx: RunContext, req: ErasureRequest, person: Person) -> None:
    """Rows of every table, export files, leftovers of dead runs (idempotent)."""
    from jobs.exports.files import remove_dead_run_folders

    with storage.local_copy(ctx.settings.paths.exports) as exports:
        req.export_temp_folders_removed += len(remove_dead_run_folders(exports))
    erase_everywhere(ctx, person, req)
    _scrub_exports_at(ctx.settings.paths.exports, person, req)
    req.staging_folders_removed += _scrub_work(ctx)


def _recompute(ctx: RunContext, req: ErasureRequest, person: Person) -> None:
    """The steps from identity on, for the latest gold date; exports scrubbed again."""
    latest = _latest_gold_date(ctx)
    if latest is None:
        return
    from jobs.pipeline import run_pipeline

    rctx = RunContext(
        settings=ctx.settings,
        spark=ctx.spark,
        as_of=latest,
        run_id=f"{ctx.run_id}-recompute",
        allow_incomplete=True,
    )
    rctx.__dict__["pii_key"] = ctx.pii_key  # same key, not loaded twice
    steps = _recompute_steps()
    run_pipeline(rctx, steps)
    req.recomputed = {"as_of_date": latest.isoformat(), "steps": [s.name for s in steps]}
    # The export step republished the latest date from the erased lake; older dates
    # were scrubbed before. Once more in case a step re-wrote one.
    _scrub_exports_at(ctx.settings.paths.exports, person, req)


def _vacuum(ctx: RunContext, req: ErasureRequest, person: Person) -> None:
    """Purge the history of every table changed since the request was recorded."""
    for t in ctx.lake.tables():
        if t == SUPPRESSION_TABLE:
            continue
        if t in req.rows_removed or req.versions_before.get(t) != ctx.lake.version(t):
            purge_history(ctx.lake.path(t))
            req.tables_vacuumed = sorted(set(req.tables_vacuumed) | {t})
            req.save()


def carry_out(ctx: RunContext, req: ErasureRequest, recompute: bool = True) -> dict:
    """Do the phases of ``req`` not done yet, write the receipt, drop the record.

    Phases in order: suppress (first, so re-delivered files are dropped from then on),
    erase, recompute, vacuum. Each is idempotent, so an attempt killed anywhere is
    finished by the next one. The caller holds the lake's lock.
    """
    req.start_attempt(ctx.run_id)
    _settle(ctx, req)
    person = _person_of(req)
    phases = {"suppress": _suppress, "erase": _erase, "recompute": _recompute, "vacuum": _vacuum}
    for phase in PHASES:
        if phase in req.done:
            continue
        if phase == "recompute" and not recompute:
            req.recomputed = {"skipped": "--no-recompute: the next run rebuilds gold"}
            continue
        phases[phase](ctx, req, person)
        req.phase_done(phase)
    req.finish_attempt()
    receipt = write_receipt(ctx, req)
    req.remove()
    return receipt


def write_receipt(ctx: RunContext, req: ErasureRequest) -> dict:
    """``<work>/erasure_receipts/<request_id>.json``: counts and times, no personal data."""
    suppressed = {k: len(v) for k, v in sorted(req.ids.items()) if v}
    if req.phone_hashes:
        suppressed["phone_hash"] = len(req.phone_hashes)
    receipt = {
        "request_id": req.request_id,
        "requested_at": req.requested_at,
        "completed_at": req.attempts[-1]["ended_at"],
        "requested_by": req.requested_by,
        "resumed": len(req.attempts) > 1,
        "attempts": req.attempts,
        "members_erased": len(req.member_ids),
        "identifiers_suppressed": suppressed,
        "rows_removed": dict(sorted(req.rows_removed.items())),
        "rows_removed_total": sum(req.rows_removed.values()),
        "export_rows_removed": dict(sorted(req.export_rows_removed.items())),
        "staging_folders_removed": req.staging_folders_removed,
        "export_temp_folders_removed": req.export_temp_folders_removed,
        "recomputed": req.recomputed,
        "tables_vacuumed": req.tables_vacuumed,
    }
    out_dir = ctx.settings.paths.work / "erasure_receipts"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{req.request_id}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(receipt, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    receipt["path"] = str(path)
    return receipt


def resume_pending(ctx: RunContext, recompute: bool = True, skip: str | None = None) -> list[dict]:
    """Finish every interrupted request (oldest first) but ``skip`` (a request_key)."""
    from jobs.lock import lake_lock

    paths = ctx.settings.paths
    with lake_lock(paths.lake, ctx.run_id):
        return [
            carry_out(ctx, req, recompute)
            for req in erasure_journal.pending(_journal_home(ctx.settings))
            if req.request_key != skip
        ]


def forget(
    ctx: RunContext,
    member: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    crm_id: str | None = None,
    recompute: bool = True,
) -> dict:
    """Carry out one erasure request (module docstring); returns the receipt (also written).

    The same request run again after a crash resumes the recorded one instead of
    resolving the person anew (their rows may be half gone). Other interrupted
    requests are finished first.
    """
    from jobs.lock import lake_lock

    paths = ctx.settings.paths
    asked = _normalised_request(member=member, phone=phone, email=email, crm_id=crm_id)
    if not asked:
        raise ErasureError("say who to forget: --member, --phone, --email or --crm-id")
    key = request_key(asked, ctx.pii_key)
    with lake_lock(paths.lake, ctx.run_id):
        resume_pending(ctx, recompute, skip=key)
        mine = [
            r for r in erasure_journal.pending(_journal_home(ctx.settings)) if r.request_key == key
        ]
        if mine:
            return carry_out(ctx, mine[0], recompute)
        person = resolve(ctx, member=member, phone=phone, email=email, crm_id=crm_id)
        return carry_out(ctx, record_request(ctx, asked, person), recompute)


def forget_cli(
    settings: Settings,
    member: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    crm_id: str | None = None,
    recompute: bool = True,
) -> None:
    """``cdp forget``: one erasure, one summary line and the receipt's path.

    Without an identifier it finishes the requests a killed ``cdp forget`` left.
    ``recompute=False`` (``--no-recompute``) skips the recompute phase, for a batch of
    erasures that the next run rebuilds once.
    """
    import typer

    from jobs.context import make_context

    ctx = make_context(settings, dt.date.today())
    try:
        asked = _normalised_request(member=member, phone=phone, email=email, crm_id=crm_id)
        skip = request_key(asked, ctx.pii_key) if asked else None
        receipts = resume_pending(ctx, recompute, skip=skip)
        if asked:
            receipts.append(
                forget(ctx, member=member, phone=phone, email=email, crm_id=crm_id,
                       recompute=recompute)  # fmt: skip
            )
        elif not receipts:
            raise ErasureError("say who to forget: --member, --phone, --email or --crm-id")
    except ErasureError as exc:
        typer.echo(f"cdp forget: {exc}", err=True)
        raise typer.Exit(1) from None
    for receipt in receipts:
        typer.echo(_summary(receipt))


def _summary(receipt: dict) -> str:
    runs = len(receipt["attempts"])
    resumed = (
        f" (resumed request {receipt['request_id']}: finished in {runs} runs, "
        f"{runs - 1} interrupted)"
        if receipt["resumed"]
        else ""
    )
    skipped = (receipt["recomputed"] or {}).get("skipped")
    stale = "; gold not recomputed (the next run does it)" if skipped else ""
    return (
        f"erased {receipt['members_erased']} member(s): {receipt['rows_removed_total']} rows "
        f"from {len(receipt['rows_removed'])} tables, "
        f"{sum(receipt['export_rows_removed'].values())} export rows{resumed}{stale}; "
        f"receipt {receipt['path']}"
    )
