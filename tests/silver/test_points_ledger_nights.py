"""Nights of `points_ledger` on hand-written bronze + xref: after every night
silver/points_ledger holds exactly the rows of a rebuild from the same bronze and xref
(as_of_date aside: the date a row was last written); a night with the same xref
rewrites only the rows of the bronze dates that changed, a rerun writes nothing.

Bronze is changed the way ingest does it: one business date's rows replaced in one
commit (a new day, or a re-sent file), so only those dates are touched.
"""

from __future__ import annotations

import datetime as dt

from jobs.schemas import table_schema
from jobs.silver import points_ledger as job
from tests.identity.conftest import day
from tests.silver.conftest import write_xref

BRONZE = "bronze/loyalty_ledger"
COMPARED = [c for c in table_schema(job.TABLE).columns if c != "as_of_date"]


def _row(txn: str, d: int, crm: str | None = None, card: str | None = None, pts: int = 10):
    """A bronze ledger row of business date day(d)."""
    return {
        "txn_id": txn,
        "crm_id": crm,
        "member_card_no": card,
        "txn_ts": dt.datetime.combine(day(d), dt.time(10)),
        "txn_date": day(d),
        "txn_type": "EARN",
        "points": pts,
        "_source_file": f"loyalty/{day(d)}/points.csv",
        "_line_no": 2,
        "_business_date": day(d),
        "_ingested_at": dt.datetime.now(),
    }


def _put(spark, ctx, d: int, rows: list[dict]) -> None:
    """Replace business date day(d) of bronze with ``rows`` (a new or re-sent file)."""
    schema = table_schema(BRONZE)
    df = spark.createDataFrame([tuple(r.get(c) for c in schema.columns) for r in rows],
                               schema.struct)  # fmt: skip
    if ctx.lake.exists(BRONZE):
        spark.sql(
            f"DELETE FROM delta.`{ctx.lake.path(BRONZE)}` "
            f"WHERE _business_date = DATE'{day(d).isoformat()}'"
        )
    ctx.lake.append(df, BRONZE)


def _rows(df) -> list[tuple]:
    return sorted(tuple(str(r[c]) for c in COMPARED) for r in df.select(*COMPARED).collect())


def _night(ctx) -> dict:
    figures = job.run(ctx)
    lake = ctx.lake
    rebuilt = job.points_ledger(lake.read(BRONZE), lake.read(job.XREF), ctx.as_of)
    assert _rows(lake.read(job.TABLE)) == _rows(rebuilt)
    return figures


def _ledger(ctx) -> dict[str, tuple]:
    return {
        r.txn_id: (r.member_id, r.matched_by, r.points, r.as_of_date)
        for r in ctx.lake.read(job.TABLE).collect()
    }


def test_nights_equal_a_rebuild_and_touch_only_what_changed(spark, make_ctx, monkeypatch):
    ctx = make_ctx(day(0))
    _put(spark, ctx, 0, [_row("T1", 0, crm="C1"), _row("T2", 0, card="K2"),
                         _row("T3", 0, crm="C3")])  # fmt: skip
    write_xref(spark, ctx, [("crm", "C1", "M1"), ("pos_card", "K2", "M2")])
    first = _night(ctx)
    assert first["mode"] == "full" and first["unmatched"] == 1  # C3: no CRM record yet

    # Night 1: a new day, the same members: only the new day's rows are written.
    ctx = make_ctx(day(1))
    _put(spark, ctx, 1, [_row("T4", 1, crm="C1")])
    night = _night(ctx)
    assert night["mode"] == "incremental" and night["touched_dates"] == 1
    assert _ledger(ctx) == {
        "T1": ("M1", "crm", 10, day(0)),  # untouched: not rewritten
        "T2": ("M2", "pos_card", 10, day(0)),
        "T3": (None, None, 10, day(0)),
        "T4": ("M1", "crm", 10, day(1)),
    }

    # The same night again: nothing changed, nothing written.
    version = ctx.lake.version(job.TABLE)
    again = _night(make_ctx(day(1)))
    assert again["mode"] == "noop" and ctx.lake.version(job.TABLE) == version

    # Night 2: day 0 re-sent (T1 corrected, T2 gone) and a new day, the same members.
    ctx = make_ctx(day(2))
    _put(spark, ctx, 0, [_row("T1", 0, crm="C1", pts=15), _row("T3", 0, crm="C3")])
    _put(spark, ctx, 2, [_row("T5", 2, card="K2")])
    later = _night(ctx)
    assert later["mode"] == "incremental" and later["touched_dates"] == 2
    assert _ledger(ctx) == {
        "T1": ("M1", "crm", 15, day(2)),
        "T3": (None, None, 10, day(2)),  # its date was re-sent: rewritten
        "T4": ("M1", "crm", 10, day(1)),
        "T5": ("M2", "pos_card", 10, day(2)),
    }

    # Night 3: M2 merged into M1 and C3's CRM record arrives: the rows of those two
    # identities take their new members in place (deletion vectors: the other rows'
    # files are kept), the others keep theirs and their dates.
    ctx = make_ctx(day(3))
    write_xref(spark, ctx, [("crm", "C1", "M1"), ("pos_card", "K2", "M1"), ("crm", "C3", "M3")])
    files = set(ctx.lake.delta_table(job.TABLE).file_uris())
    merged = _night(ctx)
    assert merged["mode"] == "incremental" and merged["mode_reason"].endswith("member_xref changed")
    assert merged["identities_changed"] == 2 and merged["rows_rekeyed"] == 2
    assert _ledger(ctx) == {
        "T1": ("M1", "crm", 15, day(2)),
        "T3": ("M3", "crm", 10, day(3)),
        "T4": ("M1", "crm", 10, day(1)),
        "T5": ("M1", "pos_card", 10, day(3)),
    }
    assert files <= set(ctx.lake.delta_table(job.TABLE).file_uris())

    # More moved identities than are re-keyed in place: rebuilt, the same rows.
    ctx = make_ctx(day(4))
    write_xref(spark, ctx, [("crm", "C1", "M9"), ("pos_card", "K2", "M1"), ("crm", "C3", "M3")])
    with monkeypatch.context() as patch:
        patch.setattr(job, "MAX_REKEYED_IDENTITIES", 0)
        many = _night(ctx)
    assert many["mode"] == "full" and many["mode_reason"].startswith("over 0 identities")
    assert {k: v[:2] for k, v in _ledger(ctx).items()} == {
        "T1": ("M9", "crm"), "T3": ("M3", "crm"), "T4": ("M9", "crm"), "T5": ("M1", "pos_card"),
    }  # fmt: skip

    # A date before the last run's is rebuilt whole as of that date.
    back = job.run(make_ctx(day(1)))
    assert back["mode"] == "full" and back["mode_reason"].startswith("backfill")
    assert set(_ledger(ctx)) == {"T1", "T3", "T4"}


def test_a_night_without_state_or_switched_off_rebuilds_whole(spark, make_ctx, monkeypatch):
    ctx = make_ctx(day(0))
    _put(spark, ctx, 0, [_row("T1", 0, crm="C1")])
    write_xref(spark, ctx, [("crm", "C1", "M1")])
    assert _night(ctx)["mode"] == "full"
    ctx.lake.overwrite(
        spark.createDataFrame([], "as_of_date date, run_id string, detail string"),
        job.STATE,
        conform_schema=False,
    )  # a state row that cannot be read
    ctx = make_ctx(day(1))
    _put(spark, ctx, 1, [_row("T2", 1, crm="C1")])
    assert _night(ctx)["mode_reason"] == "no state"
    silver_conf = job.load_silver_conf()
    off = silver_conf.model_copy(
        update={"silver": silver_conf.silver.model_copy(update={"incremental": False})}
    )
    monkeypatch.setattr(job, "load_silver_conf", lambda: off)
    assert _night(make_ctx(day(1)))["mode_reason"] == "incremental off"
