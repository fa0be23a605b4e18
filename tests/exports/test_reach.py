"""Reach by channel (issue 15 item 5): usable contacts, preferred channel, frequency cap.

Everything runs on small hand-built Delta tables that follow schemas/*.yaml.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from jobs.exports import segments as seg_mod
from jobs.exports.segments import FrequencyCap, ReachConf, Segment, SegmentsConf
from jobs.gold import channels
from jobs.identity.conf import load_identity_conf
from jobs.schemas import table_schema

D1 = dt.date(2026, 3, 9)
D2 = dt.date(2026, 3, 10)


def _write(ctx, name: str, rows: list[dict], append: bool = False) -> None:
    cols = table_schema(name).columns
    assert not {k for r in rows for k in r} - set(cols)
    df = ctx.spark.createDataFrame(
        [{c: r.get(c) for c in cols} for r in rows], table_schema(name).struct
    )
    (ctx.lake.append if append else ctx.lake.overwrite)(df, name)


def _ids(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [r["member_id"] for r in csv.DictReader(fh)]


def _member(mid: str, sms=False, email=False, push=False, crm=True, status="active") -> dict:
    return {
        "member_id": mid,
        "crm_id": f"C{mid}" if crm else None,
        "status": status,
        "opt_in_sms": sms,
        "opt_in_email": email,
        "opt_in_push": push,
        "phone_masked": "138****0000",
        "email_masked": "a***@qq.com",
        "as_of_date": D1,
    }


def _gold_day(ctx, day: dt.date, ids: list[str], stage: str = "dormant") -> None:
    """One row per member in features/rfm/lifecycle for ``day`` (appended)."""
    base = [{"member_id": m, "as_of_date": day} for m in ids]
    _write(ctx, "gold/member_features", [{**b, "tier": "gold"} for b in base], append=True)
    _write(ctx, "gold/member_rfm", [{**b, "rfm_segment": "Lost"} for b in base], append=True)
    _write(ctx, "gold/member_lifecycle", [{**b, "stage": stage} for b in base], append=True)


# member: (opt-ins, phone, email) -> expected drop reason on an sms and an e-mail segment
CONTACTS = {
    "OK": (dict(sms=True, email=True), "+86 138-1234-5678", " Li.Wei@163.COM "),
    "NOPHONE": (dict(sms=True, email=True), None, "bad@@qq.com"),
    "LANDLINE": (dict(sms=True, email=True), "02188889999", "x@example.com"),
    "DENIED": (dict(sms=True, email=True), "13800000000", "test@test.com"),
    "NOCONSENT": (dict(), "13912345678", "ok@qq.com"),
    "CLOSED": (dict(sms=True, email=True, status="closed"), "13912345679", "c@qq.com"),
}


@pytest.fixture()
def contact_lake(make_ctx):
    ctx = make_ctx(D1)
    ids = sorted(CONTACTS)
    _write(ctx, "silver/members", [_member(m, **CONTACTS[m][0]) for m in ids])
    pii = [
        {"member_id": m, "phone": CONTACTS[m][1], "email": CONTACTS[m][2], "as_of_date": D1}
        for m in ids
    ]
    _write(ctx, "restricted/member_pii", pii)
    _gold_day(ctx, D1, ids)
    return ctx


def test_consent_without_usable_contact_is_dropped_and_counted(contact_lake, monkeypatch):
    conf = SegmentsConf(
        segments=[
            Segment(name="by_sms", channel="sms", where="stage = 'dormant'"),
            Segment(name="by_email", channel="email", where="stage = 'dormant'"),
            Segment(name="by_ads", channel="ads", where="stage = 'dormant'"),
        ],
        reach=ReachConf(placeholder_email_domains=["example.com"], frequency_cap=None),
    )
    monkeypatch.setattr(seg_mod, "load_segments", lambda: conf)
    out = seg_mod.run(contact_lake)
    day = contact_lake.settings.paths.exports / D1.isoformat()
    assert _ids(day / "by_sms.csv") == ["OK"]
    assert _ids(day / "by_email.csv") == ["OK"]
    assert _ids(day / "by_ads.csv") == ["OK"]
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    by = {s["name"]: s for s in manifest["segments"]}
    want = {"closed": 1, "no_consent": 1, "no_contact": 3, "merged": 0, "capped": 0}
    for name in ("by_sms", "by_email", "by_ads"):
        assert by[name]["dropped"] == want, name
        assert by[name]["matched"] == 6 and by[name]["rows"] == 1
    assert out["dropped"]["no_contact"] == 9
    # The e-mail hash of an ad file is the normalised address of the usable e-mail.
    ads = contact_lake.spark.read.parquet(str(day / "by_ads.parquet"))
    row = ads.collect()[0]
    assert row["phone_sha256"] is not None and row["email_sha256"] is not None


def test_usable_contact_rules(spark):
    deny = load_identity_conf().junk.deny_list
    phones = ["13812345678", "+86 138 1234 5678", "8613812345678", "12812345678",
              "1381234567", "13800000000", None, "021-88889999"]  # fmt: skip
    emails = ["a.b@163.com", " A@QQ.COM ", "a@b", "a@@b.com", "test@test.com", "x@example.com",
              None, "no at.com"]  # fmt: skip
    df = spark.createDataFrame(list(zip(phones, emails, strict=True)), "p string, e string")
    got = df.select(
        channels.usable_mobile(F.col("p"), deny.phone).alias("m"),
        channels.usable_email(F.col("e"), deny.email, ["example.com"]).alias("e"),
    ).collect()
    assert [r["m"] for r in got] == [True, True, True, False, False, False, False, False]
    assert [r["e"] for r in got] == [True, True, False, False, False, False, False, False]


def _order(oid: str, mid: str, channel: str, day: dt.date, purchase: bool = True) -> dict:
    return {
        "order_id": oid,
        "source": "pos" if channel == "store" else "web",
        "channel": channel,
        "is_online": channel != "store",
        "txn_type": "SALE" if purchase else "RETURN",
        "is_purchase": purchase,
        "member_id": mid,
        "order_ts": dt.datetime.combine(day, dt.time(12)),
        "order_date": day,
        "order_month": day.strftime("%Y-%m"),
    }


def test_preferred_channel_from_consent_and_behaviour(make_ctx):
    ctx = make_ctx(D1)
    old = D1 - dt.timedelta(days=400)
    members = {
        # app buyer with push consent -> push
        "P1": (_member("P1", sms=True, push=True), [("app", 3), ("store", 1)]),
        # store buyer, sms and e-mail usable -> sms
        "P2": (_member("P2", sms=True, email=True), [("store", 2)]),
        # web buyer whose e-mail is unusable -> next in order: sms
        "P3": (_member("P3", sms=True, email=True), [("web", 2)]),
        # no purchase in 365 days (one 400 days ago, returns do not count) -> default order
        "P4": (_member("P4", email=True, push=True), []),
        # consented to nothing -> null
        "P5": (_member("P5"), [("miniprogram", 1)]),
        # tie store 2 / web 2: web (earlier in app, miniprogram, web, store) -> e-mail
        "P6": (_member("P6", sms=True, email=True), [("store", 2), ("web", 2)]),
    }
    _write(ctx, "silver/members", [m for m, _ in members.values()])
    phone, mail = "13912345678", "m@qq.com"
    pii = [
        {"member_id": m, "phone": phone, "email": None if m == "P3" else mail, "as_of_date": D1}
        for m in members
    ]
    _write(ctx, "restricted/member_pii", pii)
    orders = [
        _order(f"{m}-{ch}-{i}", m, ch, D1 - dt.timedelta(days=i))
        for m, (_, bought) in members.items()
        for ch, n in bought
        for i in range(n)
    ]
    orders += [_order("P4-old", "P4", "store", old), _order("P4-ret", "P4", "web", D1, False)]
    _write(ctx, "silver/orders", orders)
    channels.run(ctx)
    got = {
        r["member_id"]: (r["main_channel"], r["preferred_channel"])
        for r in ctx.lake.read("gold/member_channels").collect()
    }
    assert got == {
        "P1": ("app", "push"),
        "P2": ("store", "sms"),
        "P3": ("web", "sms"),
        "P4": (None, "email"),
        "P5": ("miniprogram", None),
        "P6": ("web", "email"),
    }
    row = ctx.lake.read("gold/member_channels").where("member_id = 'P3'").collect()[0]
    assert (row["sms_ok"], row["email_ok"], row["push_ok"]) == (True, False, False)


def test_preferred_export_goes_to_each_members_channel(make_ctx, monkeypatch):
    ctx = make_ctx(D1)
    ids = ["A", "B", "C"]
    _write(ctx, "silver/members", [_member(m, sms=True, email=True, push=True) for m in ids])
    pii = [{"member_id": m, "phone": "13912345678", "email": "m@qq.com", "as_of_date": D1}
           for m in ids]  # fmt: skip
    _write(ctx, "restricted/member_pii", pii)
    _gold_day(ctx, D1, ids)
    prefs = {"A": "sms", "B": "email", "C": None}
    _write(ctx, "gold/member_channels", [
        {"member_id": m, "as_of_date": D1, "preferred_channel": p} for m, p in prefs.items()
    ])  # fmt: skip
    conf = SegmentsConf(
        segments=[Segment(name="pref", channel="preferred", where="preferred_channel IS NOT NULL")],
        reach=ReachConf(frequency_cap=None),
    )
    monkeypatch.setattr(seg_mod, "load_segments", lambda: conf)
    seg_mod.run(ctx)
    day = ctx.settings.paths.exports / D1.isoformat()
    with open(day / "pref.csv", encoding="utf-8") as fh:
        rows = {r["member_id"]: r for r in csv.DictReader(fh)}
    assert {m: r["channel"] for m, r in rows.items()} == {"A": "sms", "B": "email"}
    assert rows["A"]["phone_masked"] and not rows["A"]["email_masked"]
    assert rows["B"]["email_masked"] and not rows["B"]["phone_masked"]
    got = ctx.lake.read("meta/export_contacts").collect()
    assert sorted((r["member_id"], r["channel"]) for r in got) == [("A", "sms"), ("B", "email")]


def test_frequency_cap_across_segments_and_days_and_idempotent_rerun(make_ctx, monkeypatch):
    conf = SegmentsConf(
        segments=[
            # Written second although listed first: priority decides who gets the slots.
            Segment(name="low", channel="push", where="stage = 'dormant'", priority=50),
            Segment(name="high", channel="push", where="stage = 'dormant'", priority=10),
            Segment(name="vip", channel="push", where="tier = 'gold'", priority=20),
        ],
        reach=ReachConf(frequency_cap=FrequencyCap(max_exports=2, window_days=7)),
    )
    monkeypatch.setattr(seg_mod, "load_segments", lambda: conf)
    ctx1, ctx2 = make_ctx(D1), make_ctx(D2)
    _write(ctx1, "silver/members", [_member(m, push=True) for m in ("X", "Y", "Z")])
    # D1: X and Y match all three segments: high and vip only (2 per 7 days).
    _gold_day(ctx1, D1, ["X", "Y"])
    m1 = seg_mod.run(ctx1)
    day1 = ctx1.settings.paths.exports / D1.isoformat()
    assert _ids(day1 / "high.csv") == ["X", "Y"] and _ids(day1 / "vip.csv") == ["X", "Y"]
    assert _ids(day1 / "low.csv") == []
    assert m1["dropped"]["capped"] == 2
    # D2: X and Y are used up by D1; Z is new and gets its two.
    _gold_day(ctx2, D2, ["X", "Y", "Z"])
    seg_mod.run(ctx2)
    day2 = ctx2.settings.paths.exports / D2.isoformat()
    assert _ids(day2 / "high.csv") == ["Z"] and _ids(day2 / "vip.csv") == ["Z"]
    assert _ids(day2 / "low.csv") == []
    manifest = json.loads((day2 / "manifest.json").read_text(encoding="utf-8"))
    capped = {s["name"]: s["dropped"]["capped"] for s in manifest["segments"]}
    assert capped == {"low": 3, "high": 2, "vip": 2}
    # A rerun of D2 does not count its own first run: the same files, the same log.
    log_before = sorted(map(tuple, ctx2.lake.read("meta/export_contacts").collect()))
    seg_mod.run(ctx2)
    again = json.loads((day2 / "manifest.json").read_text(encoding="utf-8"))
    assert again["files"] == manifest["files"] and again["segments"] == manifest["segments"]
    assert sorted(map(tuple, ctx2.lake.read("meta/export_contacts").collect())) == log_before
    assert len(log_before) == 6  # D1: X, Y in high and vip; D2: Z in high and vip
