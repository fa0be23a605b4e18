"""Small hand-written landing files for ingestion tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

POS_HEADER = (
    "order_id,line_no,store_id,order_ts,txn_type,ref_order_id,member_card_no,phone,sku,category,"
    "qty,unit_price,discount,amount,payment_method,points_earned,points_redeemed"
)
CRM_HEADER = (
    "crm_id,member_card_no,phone,email,id_card_no,web_user_id,name,gender,birth_date,province,city,"
    "register_ts,register_channel,home_store_id,opt_in_sms,opt_in_email,opt_in_push,status,updated_ts"
)


def day_dir(landing: Path, source: str, day: str, success: bool = True) -> Path:
    d = landing / source / day
    d.mkdir(parents=True, exist_ok=True)
    if success:
        (d / "_SUCCESS").write_text("")
    return d


def write_pos(
    landing: Path,
    day: str,
    store: str,
    lines: list[str],
    encoding: str = "utf-8",
    success: bool = True,
) -> Path:
    d = day_dir(landing, "pos", day, success)
    p = d / f"pos_{store}_{day.replace('-', '')}.csv"
    p.write_bytes(("\n".join([POS_HEADER, *lines]) + "\n").encode(encoding))
    return p


def write_crm(landing: Path, day: str, lines: list[str], success: bool = True) -> Path:
    d = day_dir(landing, "crm", day, success)
    p = d / f"members_{day.replace('-', '')}.csv"
    p.write_text("\n".join([CRM_HEADER, *lines]) + "\n", encoding="utf-8")
    return p


def write_web(
    landing: Path,
    day: str,
    part: str,
    events: list[dict | str],
    gz: bool = False,
    success: bool = True,
) -> Path:
    d = day_dir(landing, "web", day, success)
    text = (
        "\n".join(e if isinstance(e, str) else json.dumps(e, ensure_ascii=False) for e in events)
        + "\n"
    )
    name = f"events_{day.replace('-', '')}_{part}.jsonl" + (".gz" if gz else "")
    p = d / name
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return p


def sale(
    order: str,
    line: int,
    ts: str,
    qty: int = 2,
    price: str = "10.00",
    discount: str = "1.00",
    card: str = "C001",
    phone: str = "",
    category: str = "生鲜",
) -> str:
    amount = f"{qty * float(price) - float(discount or 0):.2f}"
    return f"{order},{line},S01,{ts},SALE,,{card},{phone},SKU{line},{category},{qty},{price},{discount},{amount},wechat,5,"


def event(
    eid: str, ts: str, etype: str = "page_view", anon: str = "A1", user: str | None = None, **kw
) -> dict:
    e = {
        "event_id": eid,
        "event_ts": ts,
        "anonymous_id": anon,
        "event_type": etype,
        "channel": "app",
    }
    if user:
        e["user_id"] = user
    e.update(kw)
    return e
