"""Keyed hashes and masked display values for PII, as pure Spark column functions.

Outside bronze and ``restricted/``, identifiers only appear as HMAC-SHA256 of
their normalised value (hex), so tables can still be joined on them but a leaked
table does not give the numbers back. HMAC is computed in Spark SQL from
``sha2`` and the key's inner and outer pads (RFC 2104), so it runs on every
engine without a Python UDF, and equals ``hmac.new(key, value, sha256)``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F

_BLOCK = 64


class PiiKeyError(RuntimeError):
    """No usable PII key: set CDP_PII_KEY or provide the key file."""


def load_key(key_file: Path, create_if_missing: bool) -> bytes:
    """The HMAC key: ``CDP_PII_KEY`` (hex or text), else the key file.

    A local key is made on first use only when ``create_if_missing`` (the demo);
    a production config sets it false and refuses to start without a key.
    """
    env = os.environ.get("CDP_PII_KEY")
    if env:
        try:
            return bytes.fromhex(env)
        except ValueError:
            return env.encode("utf-8")
    if key_file.exists():
        return bytes.fromhex(key_file.read_text().strip())
    if not create_if_missing:
        raise PiiKeyError(
            f"no PII key: set CDP_PII_KEY or create {key_file} (privacy.create_key_if_missing is false)"
        )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    return key


def _pads(key: bytes) -> tuple[str, str]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    return ipad, opad


def hmac_col(value: Column, key: bytes) -> Column:
    """HMAC-SHA256 (lower-case hex) of a string column; null stays null."""
    ipad, opad = _pads(key)
    inner = F.sha2(F.concat(F.unhex(F.lit(ipad)), value.cast("binary")), 256)
    outer = F.sha2(F.concat(F.unhex(F.lit(opad)), F.unhex(inner)), 256)
    return F.when(value.isNull(), F.lit(None).cast("string")).otherwise(outer)


def hmac_py(value: str, key: bytes) -> str:
    """The same hash in Python (for the CLI's `forget --phone` and for tests)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def sha256_col(value: Column) -> Column:
    """Plain SHA-256 hex, as ad platforms expect for hashed phone/email matching."""
    return F.when(value.isNull(), F.lit(None).cast("string")).otherwise(
        F.sha2(value.cast("binary"), 256)
    )


def mask_phone(phone: Column) -> Column:
    """``13800138000`` -> ``138****8000`` (canonical 11-digit input)."""
    return F.when(
        F.length(phone) >= 7,
        F.concat(F.substring(phone, 1, 3), F.lit("****"), F.substring(phone, -4, 4)),
    )


def mask_email(email: Column) -> Column:
    """``zhang.san@qq.com`` -> ``z***@qq.com``."""
    local = F.substring_index(email, "@", 1)
    domain = F.substring_index(email, "@", -1)
    return F.when(email.contains("@"), F.concat(F.substring(local, 1, 1), F.lit("***@"), domain))


def mask_name(name: Column) -> Column:
    """``张三丰`` -> ``张**``: the family name only."""
    return F.when(F.length(name) > 0, F.concat(F.substring(name, 1, 1), F.expr("repeat('*', 2)")))


def mask_id_card(id_card: Column) -> Column:
    """``110101199003071234`` -> ``1101**********1234``."""
    return F.when(
        F.length(id_card) == 18,
        F.concat(F.substring(id_card, 1, 4), F.lit("*" * 10), F.substring(id_card, -4, 4)),
    )
