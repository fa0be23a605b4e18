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
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.config import PrivacyConf

_BLOCK = 64


class PiiKeyError(RuntimeError):
    """No usable PII key: set CDP_PII_KEY, a key file or the Airflow connection."""


@dataclass(frozen=True)
class LoadedKey:
    key: bytes
    source: str  # where it came from, for messages (never the key itself)


def _parse_key(text: str) -> bytes:
    """A key as given in a secret: hex if it is hex, else its UTF-8 bytes."""
    text = text.strip()
    try:
        return bytes.fromhex(text)
    except ValueError:
        return text.encode("utf-8")


def _from_airflow(conn_id: str) -> str | None:
    """The key in an Airflow connection's password (or the whole URI-less value).

    ``AIRFLOW_CONN_<ID>`` (Airflow's own way to give a connection in the environment)
    is read directly; inside an Airflow task the connection is also looked up through
    the task SDK. Outside Airflow nothing is contacted."""
    from urllib.parse import unquote, urlsplit

    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if raw:
        raw = raw.strip()
        if raw.startswith("{"):
            return json.loads(raw).get("password")
        return unquote(urlsplit(raw).password or "") or None
    if not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return None
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id).password
    except Exception:  # noqa: BLE001 - no such connection: the other sources decide
        return None


def _generated_key_file(lake: str | Path) -> str:
    from jobs import storage
    from jobs.lake_state import state_dir

    return storage.join(state_dir(lake), "pii.key")


def _find_key(privacy: PrivacyConf, lake: str | Path) -> LoadedKey | None:
    """The first key found: env, key file, Airflow connection, the lake's demo key."""
    env = os.environ.get("CDP_PII_KEY")
    if env:
        return LoadedKey(_parse_key(env), "CDP_PII_KEY")
    key_file = os.environ.get("CDP_PII_KEY_FILE") or privacy.key_file
    if key_file and Path(key_file).exists():
        return LoadedKey(_parse_key(Path(key_file).read_text()), f"key file {key_file}")
    from_airflow = _from_airflow(privacy.airflow_conn_id)
    if from_airflow:
        return LoadedKey(_parse_key(from_airflow), f"Airflow connection {privacy.airflow_conn_id}")
    from jobs import storage

    demo = _generated_key_file(lake)
    demo_text = storage.read_text(demo)
    if demo_text is not None:
        return LoadedKey(_parse_key(demo_text), f"the lake's generated key {demo}")
    return None


def load_key(privacy: PrivacyConf, lake: str | Path) -> LoadedKey:
    """The PII key for ``lake``, checked against the fingerprint the lake records.

    Looked for in ``CDP_PII_KEY`` (hex or text), ``CDP_PII_KEY_FILE`` or
    ``privacy.key_file``, the Airflow connection ``privacy.airflow_conn_id``, then a
    key generated earlier for this lake. A key is generated only for a new lake (no
    table, no fingerprint) and only when ``privacy.create_key_if_missing`` (the demo):
    into ``privacy.key_file`` if set, else ``<lake>/_cdp/pii.key``.
    """
    from jobs.lake_state import check_key, lake_has_tables, recorded_key

    found = _find_key(privacy, lake)
    if found is None:
        recorded = recorded_key(lake)
        if recorded or lake_has_tables(lake) or not privacy.create_key_if_missing:
            known = f" (the lake was hashed with key {recorded.fingerprint})" if recorded else ""
            raise PiiKeyError(
                f"no PII key for {lake}{known}: set CDP_PII_KEY, CDP_PII_KEY_FILE, "
                f"privacy.key_file or the Airflow connection {privacy.airflow_conn_id}"
                + (
                    ""
                    if privacy.create_key_if_missing
                    else " (privacy.create_key_if_missing is false)"
                )
            )
        found = _generate(privacy.key_file or _generated_key_file(lake))
    check_key(lake, found.key, found.source)
    return found


def _generate(location: str | Path) -> LoadedKey:
    from jobs import storage

    key = secrets.token_bytes(32)
    if storage.is_remote(location):  # demo only: a lake in an object store keeps it there
        storage.write_text(location, key.hex())
        return LoadedKey(key, f"key generated for a new lake in {location}")
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex())
    return LoadedKey(key, f"key generated for a new lake in {path}")


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
