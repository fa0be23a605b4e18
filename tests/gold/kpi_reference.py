"""An independent pandas reference for the seed KPIs of gold/kpi_daily (CONTRACT 4).

Reads the lake's silver tables (and D's gold/member_tags and gold/member_value for
the two KPIs defined on them) with delta-rs and shares no code with jobs.gold.
Windows are the defaults of CONTRACT 4 (conf/kpis.yaml ships them).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from tests.gold.reference import read_delta


def _dates(col: pd.Series) -> pd.Series:
    return pd.to_datetime(col).dt.date


def _share(num: int, den: int) -> float | None:
    return num / den if den else None


def reference_seed_kpis(lake: str | Path, as_of: dt.date) -> dict[str, float | None]:
    """The seed KPIs of ``as_of`` (the ones computed from the lake; targets are conf)."""
    day = dt.timedelta(days=1)
    members = read_delta(lake, "silver/members")
    members = members[members["first_seen"].isna() | (_dates(members["first_seen"]) <= as_of)]
    member_ids = set(members["member_id"])
    xref = read_delta(lake, "silver/member_xref")
    xref = xref[xref["first_seen"].isna() | (_dates(xref["first_seen"]) <= as_of)]
    orders = read_delta(lake, "silver/orders")
    orders = orders[orders["member_id"].notna() & orders["is_purchase"].fillna(False)]
    orders = orders.assign(day=_dates(orders["order_date"]))
    events = read_delta(lake, "silver/web_events").assign(day=lambda e: _dates(e["event_date"]))
    key_member = {
        (s, k): m for s, k, m in xref[["source", "source_key", "member_id"]].itertuples(index=False)
    }

    def event_member(row) -> str | None:
        for key, source in ((row.user_key, "web_user"), (row.anon_key, "web_anon")):
            if isinstance(key, str) and key_member.get((source, key)) is not None:
                return key_member[(source, key)]
        return None

    recent = events[(events["day"] >= as_of - 29 * day) & (events["day"] <= as_of)]
    activity: dict[str, set[dt.date]] = {}
    for row in recent.itertuples(index=False):
        m = event_member(row)
        if m is not None:
            activity.setdefault(m, set()).add(row.day)
    for m, d in orders[["member_id", "day"]].itertuples(index=False):
        activity.setdefault(m, set()).add(d)

    def active(m: str, first_back: int, last_back: int) -> bool:
        lo, hi = as_of - first_back * day, as_of - last_back * day
        return any(lo <= d <= hi for d in activity.get(m, ()))

    mau = sum(active(m, 29, 0) for m in member_ids)
    base = [m for m in member_ids if active(m, 13, 7)]
    kept = [m for m in base if active(m, 6, 0)]

    crm = xref[(xref["source"] == "crm") & xref["member_id"].notna()]
    per_member = crm.groupby("member_id").size()
    duplicated = int(per_member[per_member >= 2].sum())
    web = xref[xref["source"].isin(["web_user", "web_anon"])]
    behaviour = len(set(web["member_id"].dropna()) & member_ids)

    then = int((_dates(members["first_seen"].dropna()) <= as_of - 30 * day).sum())
    registered = members.assign(reg=_dates(members["register_ts"]))
    cohort = registered[
        registered["reg"].notna()
        & (registered["reg"] >= as_of - 59 * day)
        & (registered["reg"] <= as_of - 30 * day)
    ]
    bought = 0
    for m, reg in cohort[["member_id", "reg"]].itertuples(index=False):
        days = orders.loc[orders["member_id"] == m, "day"]
        bought += any(reg <= d <= reg + 29 * day for d in days)

    tags = read_delta(lake, "gold/member_tags")
    tags = tags[_dates(tags["as_of_date"]) == as_of]
    value = read_delta(lake, "gold/member_value")
    value = value[_dates(value["as_of_date"]) == as_of]
    clv = value["clv_365d"].dropna()
    manifest = read_delta(lake, "meta/ingest_manifest")
    manifest = manifest[_dates(manifest["business_date"]) == as_of]
    received, bad = int(manifest["rows_total"].sum()), int(manifest["rows_bad"].sum())
    return {
        "sync_success_rate": _share(received - bad, received),
        "mau_share": _share(mau, len(member_ids)),
        "retention_7d": _share(len(kept), len(base)),
        "duplicate_rate": _share(duplicated, len(crm)),
        "behaviour_coverage": _share(behaviour, len(member_ids)),
        "member_growth_30d": len(member_ids) / then - 1 if then else None,
        "first_purchase_rate_30d": _share(bought, len(cohort)),
        "tag_coverage": _share(len(set(tags["member_id"]) & member_ids), len(member_ids)),
        "clv_365d_avg": float(clv.mean()) if len(clv) else None,
        "points_redemption_rate": _redemption_rate(lake, as_of),
    }


def _redemption_rate(lake: str | Path, as_of: dt.date) -> float | None:
    """Points redeemed / earned on silver/points_ledger in [D-364, D]; None without a ledger."""
    if not (Path(lake) / "silver" / "points_ledger" / "_delta_log").exists():
        return None
    ledger = read_delta(lake, "silver/points_ledger")
    days = _dates(ledger["txn_date"])
    window = ledger[(days >= as_of - dt.timedelta(days=364)) & (days <= as_of)]
    earned = int(window.loc[window["txn_type"] == "EARN", "points"].sum())
    redeemed = int(window.loc[window["txn_type"] == "REDEEM", "points"].sum())
    return _share(redeemed, earned)
