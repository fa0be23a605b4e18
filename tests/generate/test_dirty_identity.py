"""`cdp generate --dirty-identity`: a harder identity truth (issue 16 item 6)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from jobs.generate.crm import _dirty_fields, _swap_day_month, _typo
from jobs.generate.world import build_world

END = dt.date(2026, 11, 7)


def test_dirty_world_has_many_registrations_and_family_phones():
    clean = build_world(3000, 3, 5, END)
    dirty = build_world(3000, 3, 5, END, dirty_identity=True)
    per_person = np.bincount(dirty.acct_owner)
    assert per_person.max() >= 4 and per_person.max() <= 8
    assert np.bincount(clean.acct_owner).max() <= 3
    members = np.flatnonzero((dirty.kind == 0) & (dirty.phone > 0))
    _, counts = np.unique(dirty.phone[members], return_counts=True)
    assert (counts == 2).sum() >= 25  # 1% of members share a phone with family
    assert len(np.unique(clean.phone[clean.phone > 0])) == int((clean.phone > 0).sum())


def test_typos_stay_one_edit_away():
    rng = np.random.default_rng(1)
    for _ in range(50):
        t = _typo(rng, "320106199406270123", 6)
        assert len(t) == 18 and t != "320106199406270123"
        assert sum(a != b for a, b in zip(t, "320106199406270123", strict=True)) <= 2
    assert _swap_day_month("1994-06-07") == "1994-07-06"
    assert _swap_day_month("19940627") == "19940627"  # day 27 is no month
    fields = {"phone": "13912345678", "id_card_no": "", "birth_date": "", "name": "曾东涛",
              "city": "南京", "email": ""}  # fmt: skip
    seen = set()
    for seed in range(200):
        f = dict(fields)
        _dirty_fields(np.random.default_rng(seed), f)
        seen.add(f["name"])
    assert {"曾涛东", "东涛 曾", ""} <= seen
