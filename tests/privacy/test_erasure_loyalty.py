"""`cdp forget` covers the loyalty ledger like every source (registry-driven).

Alice's ledger rows (by crm_id, by card only, a re-delivered copy, a quarantined row)
go from bronze, its duplicates table, quarantine and silver/points_ledger; Bob's stay;
re-sent ledger files do not bring her back (suppressed at ingest).
"""

from __future__ import annotations

from pyspark.sql import functions as F

from jobs.ingest.job import ingest
from jobs.privacy.erasure import forget
from jobs.silver import points_ledger
from tests.ingest.test_loyalty import write_ledger
from tests.privacy.test_erasure import ALICE, BOB, D1, D2
from tests.privacy.test_erasure import alice_base as alice_base  # a fixture
from tests.privacy.test_erasure import lake_with_alice as lake_with_alice  # a fixture

DAY1 = [
    f"LA1,{ALICE['crm']},,{D1} 10:00:00,EARN,100,,,purchase,2027-11-30",
    f"LA2,,{ALICE['card']},{D1} 11:00:00,REDEEM,40,,,gift,",  # by card only
    f"LA3,{ALICE['crm']},,{D1} 12:00:00,EARN,abc,,,review,",  # quarantined, her id in _raw
    f"LB1,{BOB['crm']},{BOB['card']},{D1} 10:00:00,EARN,70,,,purchase,2027-11-30",
]
DAY2 = [
    f"LA1,{ALICE['crm']},,{D1} 10:00:00,EARN,100,,,purchase,2027-11-30",  # re-delivered copy
    f"LB2,{BOB['crm']},,{D2} 09:00:00,REDEEM,20,,,coupon,",
]


def _txns(lake, table: str) -> list[str]:
    return sorted(r.txn_id for r in lake.read(table).collect())


def test_forget_erases_her_ledger_everywhere_and_resent_files_stay_suppressed(
    lake_with_alice,
    settings,
    make_ctx,  # noqa: F811 - the fixture imported above
):
    landing = settings.paths.landing
    write_ledger(landing, D1, DAY1)
    write_ledger(landing, D2, DAY2)
    ctx = make_ctx(D2)
    ingest(ctx, "loyalty")
    points_ledger.run(ctx)
    lake = ctx.lake
    assert _txns(lake, "silver/points_ledger") == ["LA1", "LA2", "LB1", "LB2"]
    assert lake.read("quarantine/loyalty").count() == 1

    receipt = forget(make_ctx(D2), member=ALICE["member"], recompute=False)

    removed = receipt["rows_removed"]
    assert removed["bronze/loyalty_ledger"] == 2 and removed["bronze/loyalty_duplicates"] == 1
    assert removed["quarantine/loyalty"] == 1 and removed["silver/points_ledger"] == 2
    assert _txns(lake, "bronze/loyalty_ledger") == ["LB1", "LB2"]
    assert _txns(lake, "silver/points_ledger") == ["LB1", "LB2"]
    assert lake.read("quarantine/loyalty").count() == 0
    assert lake.read("bronze/loyalty_duplicates").count() == 0

    # The loyalty system sends both days again, each with one more transaction of Bob's.
    write_ledger(landing, D1, [*DAY1, f"LB0,{BOB['crm']},,{D1} 08:00:00,EARN,9,,,review,"])
    write_ledger(landing, D2, [*DAY2, f"LB3,{BOB['crm']},,{D2} 10:00:00,EARN,5,,,review,"])
    result = ingest(make_ctx(D2), "loyalty")
    assert result["files"] == 2
    assert _txns(lake, "bronze/loyalty_ledger") == ["LB0", "LB1", "LB2", "LB3"]
    assert lake.read("quarantine/loyalty").count() == 0
    assert lake.read("bronze/loyalty_duplicates").count() == 0
    manifest = lake.read("meta/ingest_manifest").filter(F.col("source") == "loyalty")
    assert sum(r.rows_suppressed for r in manifest.collect()) == 4
