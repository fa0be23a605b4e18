"""The points_expiry_reminder segment: members tagged points_expiring_soon, exported
by SMS only with consent and a usable mobile, and within the frequency cap."""

from __future__ import annotations

import csv
import datetime as dt
import json

from jobs.exports import segments as seg_mod
from tests.exports.test_segments import _write

D = dt.date(2026, 3, 9)
# member_id: (tags, opt_in_sms, phone)
MEMBERS = {
    "P1": (["points_expiring_soon"], True, "13900001111"),  # reminded
    "P2": (["points_expiring_soon"], False, "13900002222"),  # no consent
    "P3": (["points_expiring_soon"], True, "13900003333"),  # at the cap (2 in 7 days)
    "P4": (["points_expiring_soon"], True, None),  # no mobile
    "P5": ([], True, "13900005555"),  # nothing expiring
}


def test_reminder_respects_consent_contact_and_cap(make_ctx, monkeypatch):
    ctx = make_ctx(D)
    # The shipped segment alone (with the shipped reach rules): one file set, not ten.
    shipped = seg_mod.load_segments()
    only = [s for s in shipped.segments if s.name == "points_expiry_reminder"]
    assert len(only) == 1
    reminder = shipped.model_copy(update={"segments": only})
    monkeypatch.setattr(seg_mod, "load_segments", lambda *a, **k: reminder)
    feats, life, tags, members, pii = [], [], [], [], []
    for mid, (held, sms, phone) in MEMBERS.items():
        base = {"member_id": mid, "as_of_date": D}
        feats.append({**base, "frequency_total": 1, "tier": "bronze"})
        life.append({**base, "stage": "active"})
        tags += [{**base, "tag": t, "rule": t} for t in held]
        members.append(
            {"member_id": mid, "crm_id": f"C{mid}", "status": "active", "opt_in_sms": sms}
        )
        pii.append({"member_id": mid, "phone": phone, "as_of_date": D})
    _write(ctx, "gold/member_features", feats)
    _write(ctx, "gold/member_rfm", [])
    _write(ctx, "gold/member_lifecycle", life)
    _write(ctx, "gold/member_tags", tags)
    _write(ctx, "silver/members", members)
    _write(ctx, "restricted/member_pii", pii)
    earlier = [
        {
            "member_id": "P3",
            "as_of_date": D - dt.timedelta(days=n),
            "segment": "x",
            "channel": "sms",
        }
        for n in (2, 3)
    ]
    _write(ctx, "meta/export_contacts", earlier)

    seg_mod.run(ctx)
    day = ctx.settings.paths.exports / D.isoformat()
    with open(day / "points_expiry_reminder.csv", encoding="utf-8") as fh:
        assert [r["member_id"] for r in csv.DictReader(fh)] == ["P1"]
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    entry = next(s for s in manifest["segments"] if s["name"] == "points_expiry_reminder")
    assert entry["matched"] == 4 and entry["rows"] == 1
    assert {k: v for k, v in entry["dropped"].items() if v} == {
        "no_consent": 1,
        "no_contact": 1,
        "capped": 1,
    }
