"""Normalisation of identifiers, as pure Spark column functions (no UDFs).

Every function maps a raw string column to its canonical form, or null when the
value cannot be an identifier of that kind: a null never links anything, so a
lenient normaliser would merge people on garbage.

Text keyed on a Chinese keyboard is often full-width (``１３９…``, ``＋８６``,
``ｌｉ＠ｑｑ．ｃｏｍ``) or carries invisible characters (a zero-width space pasted
from a chat, a no-break space). Unicode NFKC folds the first, and the invisible
ones are dropped, *before* the rules below. Neither Spark nor Sail has an NFKC
built-in, so ingestion applies :func:`canonical_text` (plain Python) to the
identifier columns while it parses a file (jobs.ingest.parse); the Spark
functions here also fold full-width forms and drop invisible characters with
``translate``/``regexp_replace`` (built-ins on both engines), for values that
reach them another way (bronze rows taken in before, conf deny-lists, `cdp forget`).
"""

from __future__ import annotations

import unicodedata

from pyspark.sql import Column
from pyspark.sql import functions as F

# Landing columns holding identifiers a person keys by hand: canonicalised at parse time.
IDENTIFIER_COLUMNS = frozenset({"phone", "email", "id_card_no", "member_card_no"})

# Invisible characters: format (Cf: zero-width space/joiners, BOM, soft hyphen, bidi
# marks) and control (Cc) characters. Other spaces (Zs, e.g. no-break space) become " ".
_DROPPED_CATEGORIES = frozenset({"Cf", "Cc"})


def canonical_text(text: str) -> str:
    """NFKC of ``text`` with invisible characters dropped and every space a plain ``" "``.

    ``"１３９ １２３４ ５６７８"`` -> ``"139 1234 5678"``; ``"ab\u200bc"`` -> ``"abc"``.
    """
    folded = unicodedata.normalize("NFKC", text)
    return "".join(
        " " if ch.isspace() else ch
        for ch in folded
        if unicodedata.category(ch) not in _DROPPED_CATEGORIES or ch in "\t\n\r"
    )


# Full-width ASCII (U+FF01..U+FF5E) and the ideographic space, and their NFKC forms.
_FULL_WIDTH = "".join(chr(c) for c in range(0xFF01, 0xFF5F)) + "\u3000\u00a0"
_HALF_WIDTH = "".join(chr(c) for c in range(0x21, 0x7F)) + "  "
# Invisible characters a regex can name on both engines (Java and Rust regex).
_INVISIBLE = r"[\p{Cf}\p{Cc}]"


def fold_text(c: Column) -> Column:
    """Spark counterpart of :func:`canonical_text` for identifiers: full-width forms to
    ASCII, no-break and ideographic spaces to spaces, invisible characters dropped."""
    return F.translate(F.regexp_replace(c, _INVISIBLE, ""), _FULL_WIDTH, _HALF_WIDTH)


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
    s = F.regexp_replace(F.trim(fold_text(c)), r"[\s\-.()]", "")
    return (
        F.when(s.rlike(f"^{_MOBILE}$"), s)
        .when(s.rlike(f"^(\\+86|86|\\+0086|0086){_MOBILE}$"), F.substring(s, -11, 11))
        .otherwise(F.lit(None).cast("string"))
    )


def norm_email(c: Column) -> Column:
    """Trimmed, lower-cased e-mail; null unless it looks like ``local@domain.tld``."""
    s = F.lower(F.trim(fold_text(c)))
    return F.when(
        s.rlike(r"^[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$"), s
    ).otherwise(F.lit(None).cast("string"))


def clean_id_card(c: Column) -> Column:
    """Trimmed, upper-cased ID card text (no validation): what gets reported as invalid."""
    return F.upper(_blank_to_null(fold_text(c)))


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
    return F.upper(_blank_to_null(fold_text(c)))


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
