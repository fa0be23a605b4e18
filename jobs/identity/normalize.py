"""Normalisation of identifiers, as pure Spark column functions (no UDFs).

Every function maps a raw string column to its canonical form, or null when the
value cannot be an identifier of that kind: a null never links anything, so a
lenient normaliser would merge people on garbage.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# ISO 7064 MOD 11-2 weights of the 17 body digits of a PRC resident ID, and the
# check character for each remainder 0..10.
ID_CARD_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CARD_CHECK = "10X98765432"

_MOBILE = "1[3-9][0-9]{9}"


def _blank_to_null(c: Column) -> Column:
    t = F.trim(c)
    return F.when(F.length(t) > 0, t)


def norm_phone(c: Column) -> Column:
    """Chinese mobile number -> canonical 11 digits, else null.

    Spaces, dashes, dots and brackets are separators; a ``+86``, ``86`` or
    ``0086`` country prefix is dropped. Anything else (letters, landlines,
    wrong length, a second digit outside 3-9) is not a mobile number.
    """
    s = F.regexp_replace(F.trim(c), r"[\s\-.()\u3000]", "")
    return (
        F.when(s.rlike(f"^{_MOBILE}$"), s)
        .when(s.rlike(f"^(\\+86|86|\\+0086|0086){_MOBILE}$"), F.substring(s, -11, 11))
        .otherwise(F.lit(None).cast("string"))
    )


def norm_email(c: Column) -> Column:
    """Trimmed, lower-cased e-mail; null unless it looks like ``local@domain.tld``."""
    s = F.lower(F.trim(c))
    return F.when(
        s.rlike(r"^[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$"), s
    ).otherwise(F.lit(None).cast("string"))


def clean_id_card(c: Column) -> Column:
    """Trimmed, upper-cased ID card text (no validation): what gets reported as invalid."""
    return F.upper(_blank_to_null(c))


def id_card_checksum_ok(c: Column) -> Column:
    """True when ``c`` (already cleaned) is 17 digits plus the right MOD 11-2 check char.

    Null input gives null; a malformed one gives false.
    """
    shape_ok = c.rlike("^[0-9]{17}[0-9X]$")
    total = None
    for i, w in enumerate(ID_CARD_WEIGHTS):
        term = F.substring(c, i + 1, 1).cast("int") * F.lit(w)
        total = term if total is None else total + term
    expected = F.substring(F.lit(ID_CARD_CHECK), (total % 11) + 1, 1)
    return F.when(c.isNull(), F.lit(None).cast("boolean")).otherwise(
        F.when(shape_ok, F.substring(c, 18, 1) == expected).otherwise(F.lit(False))
    )


def norm_id_card(c: Column) -> Column:
    """Valid 18-character PRC resident ID (upper-case X), else null."""
    s = clean_id_card(c)
    return F.when(id_card_checksum_ok(s), s).otherwise(F.lit(None).cast("string"))


def norm_card(c: Column) -> Column:
    """Member card number: trimmed and upper-cased; empty is null."""
    return F.upper(_blank_to_null(c))


def norm_text_id(c: Column) -> Column:
    """Opaque ids (crm_id, user_id, anonymous_id): trimmed; empty is null. Case is kept."""
    return _blank_to_null(c)


def norm_name(c: Column) -> Column:
    """Name for the second-pass match: no whitespace at all (``张 三`` = ``张三``), lower case."""
    s = F.lower(F.regexp_replace(F.coalesce(c, F.lit("")), r"[\s\u3000·.]", ""))
    return F.when(F.length(s) > 0, s)


def norm_city(c: Column) -> Column:
    """City for the second-pass match: trimmed, a trailing ``市`` dropped (``上海市`` = ``上海``)."""
    s = F.regexp_replace(F.lower(F.trim(F.coalesce(c, F.lit("")))), "市$", "")
    return F.when(F.length(s) > 0, s)
