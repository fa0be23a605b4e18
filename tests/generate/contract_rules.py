"""An independent, plain-Python reading of CONTRACT section 1 for checking generated files.

Deliberately not shared with jobs/: the generator must be checked against the contract,
not against itself. Rule names are the quarantine reasons of expectations/*.json.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

import orjson

POS_COLUMNS = (
    "order_id line_no store_id order_ts txn_type ref_order_id member_card_no phone sku category "
    "qty unit_price discount amount payment_method points_earned points_redeemed"
).split()
CRM_COLUMNS = (
    "crm_id member_card_no phone email id_card_no web_user_id name gender birth_date province "
    "city register_ts register_channel home_store_id opt_in_sms opt_in_email opt_in_push status "
    "updated_ts"
).split()
WEB_FIELDS = (
    "event_id event_ts anonymous_id user_id event_type channel sku category order_id revenue "
    "properties"
).split()
EVENT_TYPES = {
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "checkout",
    "purchase",
    "login",
    "signup",
    "share",
    "review",
}
CATEGORIES = {"生鲜", "美妆", "母婴", "家居", "服饰", "数码", "食品", "酒水"}

_POS_INT = re.compile(r"^0*[1-9][0-9]{0,8}$")
_MONEY = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")
_POINTS = re.compile(r"^[0-9]{1,9}$")
_TS = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$")
_ISO = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})$"
)
_BIRTH = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8})$")
_OPT = re.compile(r"^(y|n|true|false|1|0)$", re.IGNORECASE)
_NUM = re.compile(r"^[+-]?[0-9]+(\.[0-9]+)?$")


def decode_csv(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("gb18030"), "gb18030"


def clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(physical line number, fields) of every data row; the header is line 1."""
    text, _ = decode_csv(path.read_bytes())
    for i, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if i == 1:
            continue
        yield i, fields


def jsonl_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def readable(path: Path) -> bool:
    try:
        jsonl_lines(path)
    except (OSError, EOFError, zlib.error):
        return False
    return True


def _dec(v: str | None) -> Decimal | None:
    if v is None or not _NUM.match(v):
        return None
    try:
        return Decimal(v)
    except InvalidOperation:
        return None


def _int(v: str | None) -> int | None:
    if v is None or not re.match(r"^[+-]?[0-9]+$", v):
        return None
    return int(v)


def _ts(v: str | None) -> dt.datetime | None:
    if v is None or not _TS.match(v):
        return None
    try:
        return dt.datetime.strptime(v, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _in_range(ts: dt.datetime | dt.date, business: dt.date) -> bool:
    day = ts.date() if isinstance(ts, dt.datetime) else ts
    return day.year >= 2000 and day <= business + dt.timedelta(days=1)


def pos_reasons(fields: list[str], business: dt.date) -> set[str]:
    if len(fields) != len(POS_COLUMNS):
        return {"wrong_field_count"}
    r = dict(zip(POS_COLUMNS, (clean(f) for f in fields), strict=True))
    out = set()
    if r["order_id"] is None:
        out.add("order_id_required")
    if r["line_no"] is None or not _POS_INT.match(r["line_no"]):
        out.add("line_no_invalid")
    if r["store_id"] is None:
        out.add("store_id_required")
    ts = _ts(r["order_ts"])
    if ts is None:
        out.add("order_ts_invalid")
    elif not _in_range(ts, business):
        out.add("order_ts_out_of_range")
    if r["txn_type"] not in ("SALE", "RETURN"):
        out.add("txn_type_invalid")
    if (r["txn_type"] == "RETURN" and r["ref_order_id"] is None) or (
        r["txn_type"] == "SALE" and r["ref_order_id"] is not None
    ):
        out.add("ref_order_id_invalid")
    if r["sku"] is None:
        out.add("sku_required")
    if r["category"] is None:
        out.add("category_required")
    if r["qty"] is None or not _POS_INT.match(r["qty"]):
        out.add("qty_invalid")
    if r["unit_price"] is None or not _MONEY.match(r["unit_price"]):
        out.add("unit_price_invalid")
    if r["discount"] is not None and not _MONEY.match(r["discount"]):
        out.add("discount_invalid")
    if r["amount"] is None or not _MONEY.match(r["amount"]):
        out.add("amount_invalid")
    q, p, a = _int(r["qty"]), _dec(r["unit_price"]), _dec(r["amount"])
    disc = _dec(r["discount"]) or Decimal(0)
    if (
        q is not None
        and p is not None
        and a is not None
        and abs(q * p - disc - a) > Decimal("0.005")
    ):
        out.add("amount_mismatch")
    if r["payment_method"] is not None and r["payment_method"] not in (
        "cash",
        "card",
        "wechat",
        "alipay",
        "other",
    ):
        out.add("payment_method_invalid")
    for c in ("points_earned", "points_redeemed"):
        if r[c] is not None and not _POINTS.match(r[c]):
            out.add("points_invalid")
    return out


def web_text(value: object) -> str | None:
    """A JSON value as the text the pipeline sees (strings trimmed, numbers as JSON)."""
    if value is None:
        return None
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def web_reasons(line: bytes, business: dt.date) -> tuple[set[str], dict | None]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {"invalid_json"}, None
    if not isinstance(obj, dict):
        return {"not_an_object"}, None
    r = {k: web_text(obj.get(k)) for k in WEB_FIELDS}
    out = set()
    if r["event_id"] is None:
        out.add("event_id_required")
    ts = None
    if r["event_ts"] is not None and _ISO.match(r["event_ts"]):
        try:
            ts = dt.datetime.fromisoformat(r["event_ts"])
        except ValueError:
            ts = None
    if ts is None:
        out.add("event_ts_invalid")
    elif not _in_range(ts.astimezone(dt.timezone(dt.timedelta(hours=8))), business):
        out.add("event_ts_out_of_range")
    if r["anonymous_id"] is None:
        out.add("anonymous_id_required")
    if r["event_type"] not in EVENT_TYPES:
        out.add("event_type_invalid")
    if r["channel"] not in ("web", "app", "miniprogram"):
        out.add("channel_invalid")
    if r["event_type"] == "purchase" and r["order_id"] is None:
        out.add("order_id_required_for_purchase")
    rev = r["revenue"]
    if (r["event_type"] == "purchase" and rev is None) or (
        rev is not None and (_dec(rev) is None or _dec(rev) < 0)
    ):
        out.add("revenue_invalid")
    return out, r


def crm_reasons(fields: list[str], business: dt.date) -> set[str]:
    if len(fields) != len(CRM_COLUMNS):
        return {"wrong_field_count"}
    r = dict(zip(CRM_COLUMNS, (clean(f) for f in fields), strict=True))
    out = set()
    if r["crm_id"] is None:
        out.add("crm_id_required")
    for col in ("register_ts", "updated_ts"):
        ts = _ts(r[col])
        if ts is None:
            out.add(f"{col}_invalid")
        elif not _in_range(ts, business):
            out.add(f"{col}_out_of_range")
    if r["register_channel"] is not None and r["register_channel"] not in (
        "store",
        "web",
        "app",
        "wechat",
    ):
        out.add("register_channel_invalid")
    if r["gender"] is not None and r["gender"] not in ("M", "F", "男", "女"):
        out.add("gender_invalid")
    b = r["birth_date"]
    if b is not None:
        ok = bool(_BIRTH.match(b))
        if ok:
            try:
                dt.datetime.strptime(b, "%Y-%m-%d" if "-" in b else "%Y%m%d")
            except ValueError:
                ok = False
        if not ok:
            out.add("birth_date_invalid")
    for c in ("opt_in_sms", "opt_in_email", "opt_in_push"):
        if r[c] is not None and not _OPT.match(r[c]):
            out.add("opt_in_invalid")
    if r["status"] is not None and r["status"] not in ("active", "closed"):
        out.add("status_invalid")
    return out


def canonical_phone(text: str | None) -> str | None:
    if text is None:
        return None
    digits = re.sub(r"[^0-9]", "", text)
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if len(digits) == 11 and digits.startswith("1") else None


def id_card_ok(value: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(value[:17], weights, strict=True))
    return "10X98765432"[total % 11] == value[17]
