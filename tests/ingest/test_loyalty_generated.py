"""The generated loyalty ledger: consistent with the POS sales, and conserved by ingest.

One small generated zone (250 members x 8 days). The ledger is checked against the
POS files it was drawn from (plain Python), then taken in: every planted bad row is
quarantined with its one reason, every re-delivery lands in the duplicates table, and
every other row in bronze (row conservation against the generator's truth).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import defaultdict

import pytest

from jobs.generate.landing import generate_landing
from jobs.ingest.job import ingest
from jobs.ingest.parse import decode

END = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    out = tmp_path_factory.mktemp("ledger") / "landing"
    generate_landing(out, members=250, days=8, seed=11, end_date=END, workers=1)
    return out


def _csv(path) -> list[dict[str, str]]:
    text, _ = decode(path.read_bytes())
    return list(csv.DictReader(text.splitlines()))


def _truth(zone, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader((zone / "truth" / name).open(encoding="utf-8")))


def test_ledger_books_exactly_the_points_the_tills_printed(zone):
    pos_points: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for path in (zone / "pos").rglob("*.csv"):
        for r in _csv(path):
            if r["txn_type"] == "SALE" and (r["member_card_no"] or r["phone"]):
                pos_points[r["order_id"]][0] += int(r["points_earned"] or 0)
                pos_points[r["order_id"]][1] += int(r["points_redeemed"] or 0)
    bad = {(r["file"], int(r["line_no"])) for r in _truth(zone, "loyalty_bad_rows.csv")}
    dups = {(r["file"], int(r["line_no"])) for r in _truth(zone, "loyalty_duplicates.csv")}
    ledger: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    reasons, types = set(), set()
    for path in sorted((zone / "loyalty").rglob("*.csv")):
        rel = path.relative_to(zone).as_posix()
        for line, r in enumerate(_csv(path), start=2):
            if (rel, line) in bad or (rel, line) in dups:
                continue
            types.add(r["txn_type"])
            reasons.add(r["reason"].split(":")[0])
            if r["order_id"] and r["reason"] in ("purchase", "coupon"):
                ledger[r["order_id"]][r["txn_type"] == "REDEEM"] += int(r["points"])
    assert ledger, "no purchase was booked"
    for order, (earned, redeemed) in ledger.items():
        assert pos_points[order] == [earned, redeemed], order
    assert types == {"EARN", "REDEEM", "EXPIRE", "ADJUST"}
    assert {"purchase", "birthday_bonus", "review", "coupon", "gift", "expiry"} <= reasons
    balances = [int(r["balance"]) for r in _truth(zone, "points_balances.csv")]
    assert balances and min(balances) >= 0  # a well-formed ledger never goes below 0


def test_ingest_conserves_every_ledger_row(zone, make_ctx, settings):
    ctx = make_ctx(END, settings=settings.model_copy(
        update={"paths": settings.paths.model_copy(update={"landing": zone})}
    ))  # fmt: skip
    result = ingest(ctx, "loyalty")
    summary = json.loads((zone / "truth" / "loyalty_summary.json").read_text())
    bad = {
        (r["file"], int(r["line_no"])): r["reason"] for r in _truth(zone, "loyalty_bad_rows.csv")
    }
    dups = {(r["file"], int(r["line_no"])) for r in _truth(zone, "loyalty_duplicates.csv")}
    assert result["files"] == 8 and result["rows_in"] == summary["rows"]
    assert result["rows_out"] == summary["valid_rows"]
    got_bad = {
        (r._source_file, r._line_no): r._reasons
        for r in ctx.lake.read("quarantine/loyalty").collect()
    }
    assert got_bad == {k: [v] for k, v in bad.items()}
    got_dups = {
        (r._source_file, r._line_no) for r in ctx.lake.read("bronze/loyalty_duplicates").collect()
    }
    assert got_dups == dups
    assert result["rows_in"] == result["rows_out"] + result["quarantined"] + result["duplicates"]
    manifest = ctx.lake.read("meta/ingest_manifest").filter("source = 'loyalty'").collect()
    assert {r.encoding for r in manifest} == {"utf-8", "gb18030", "utf-8-sig"}
    reasons = {r.reason for r in ctx.lake.read("bronze/loyalty_ledger").collect()}
    assert "review:好评" in reasons and any(r.startswith("gift:") for r in reasons)
