"""The suppression list: hashed identifiers of erased people, and its use at ingestion.

``cdp forget`` (jobs.privacy.erasure) adds the keyed hashes (HMAC-SHA256 of the
normalised value, jobs.privacy.pii) of every identifier of an erased person to
``restricted/suppression_list``. Ingestion filters each batch through
:func:`apply_suppression`, so a re-sent or re-ingested landing file cannot bring
the person back. Only hashes are kept: the list itself does not say who was
erased, and it can only be matched by someone holding the PII key.

Which identifier of a row decides is each source's ``pii_columns`` (jobs.sources):

* POS lines: the member card number and the phone keyed at the till;
* web events: the web account (``user_id``) and the device (``anonymous_id``);
* CRM rows: the ``crm_id`` only. A CRM row of *another* member who shares a
  phone or an e-mail with the erased person (a family number) is not suppressed:
  identity resolution, not a shared contact value, decides whose record it is;
* ledger transactions: the ``crm_id`` and the member card number.

The other identifier types (e-mail, ID card) are kept in the list for the
record and for any later consumer, but suppress no rows on their own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.context import RunContext
from jobs.privacy.pii import hmac_col, hmac_py
from jobs.sources import SOURCES

TABLE = "restricted/suppression_list"

ID_TYPES = ("phone", "email", "id_card", "card", "crm_id", "web_user", "web_anon")

# Identifier type -> column of the source's rows (staged text rows and typed bronze
# rows use the same column names, so the filter works on both).
SOURCE_COLUMNS: dict[str, dict[str, str]] = {s.name: s.pii_columns for s in SOURCES.values()}


def _normalisers() -> dict[str, Callable[[Column], Column]]:
    # Imported lazily: the identity package is the owner of these rules and must
    # define them exactly once, so the hashes here equal the keys of silver/member_xref.
    from jobs.identity.normalize import (
        clean_id_card,
        norm_card,
        norm_email,
        norm_phone,
        norm_text_id,
    )

    return {
        "phone": norm_phone,
        "email": norm_email,
        "id_card": clean_id_card,
        "card": norm_card,
        "crm_id": norm_text_id,
        "web_user": norm_text_id,
        "web_anon": norm_text_id,
    }


def normalise_col(id_type: str, value: Column) -> Column:
    """The canonical form of an identifier column (null when it cannot be one)."""
    return _normalisers()[id_type](value)


_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_SEPARATORS = re.compile(r"[\s\-.()\u3000]")
_EMAIL = re.compile(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}")


def normalise_py(id_type: str, value: str) -> str | None:
    """The same normalisation in Python, for identifiers typed on the command line."""
    v = value.strip()
    if not v:
        return None
    if id_type == "phone":
        s = _PHONE_SEPARATORS.sub("", v)
        if _MOBILE.fullmatch(s):
            return s
        m = re.fullmatch(r"(?:\+86|86|\+0086|0086)(" + _MOBILE.pattern + ")", s)
        return m.group(1) if m else None
    if id_type == "email":
        s = v.lower()
        return s if _EMAIL.fullmatch(s) else None
    if id_type in ("id_card", "card"):
        return v.upper()
    return v


def suppression_rows(
    identifiers: dict[str, set[str]], key: bytes, request_id: str, now: dt.datetime
) -> list[tuple]:
    """Rows of restricted/suppression_list for one erasure (hashes of normalised values)."""
    rows = []
    for id_type in ID_TYPES:
        for value in sorted(identifiers.get(id_type, ())):
            rows.append((id_type, hmac_py(value, key), request_id, now))
    return rows


def _list_for(ctx: RunContext, id_types: list[str]) -> DataFrame | None:
    """(id_type, value_hash) of the list for these types; None when nothing can match."""
    if not ctx.lake.exists(TABLE):
        return None
    listed = (
        ctx.lake.read(TABLE)
        .where(F.col("id_type").isin(id_types))
        .select("id_type", "value_hash")
        .distinct()
    )
    if listed.limit(1).count() == 0:
        return None
    return listed


def suppress(df: DataFrame, listed: DataFrame, columns: dict[str, str], key: bytes) -> DataFrame:
    """Rows of ``df`` none of whose identifiers (``columns``: type -> column) is listed.

    Grain and columns of ``df`` unchanged. ``listed``: (id_type, value_hash), the
    suppression list. One anti-join per identifier type against the (small,
    broadcast) list, so the cost is one HMAC per row and type.
    """
    kept = df
    for id_type, column in columns.items():
        hashes = listed.where(F.col("id_type") == id_type).select(
            F.col("value_hash").alias("_supp_hash")
        )
        kept = (
            kept.withColumn("_supp_key", hmac_col(normalise_col(id_type, F.col(column)), key))
            .join(F.broadcast(hashes), F.col("_supp_key") == F.col("_supp_hash"), "left_anti")
            .drop("_supp_key")
        )
    return kept


def apply_suppression(ctx: RunContext, source: str, bronze_df: DataFrame) -> tuple[DataFrame, int]:
    """Drop the rows of erased people from one ingestion batch of ``source``.

    ``bronze_df``: rows of one batch (typed bronze rows, or staged text rows: the
    identifier columns have the same names). Returns the rows to keep (same grain
    and columns) and how many were suppressed. Costs nothing while the list is
    empty, which is the normal case.
    """
    columns = SOURCE_COLUMNS[source]
    listed = _list_for(ctx, list(columns))
    if listed is None:
        return bronze_df, 0
    kept = suppress(bronze_df, listed, columns, ctx.pii_key)
    n = bronze_df.count() - kept.count()
    return kept, n
