"""Incremental identity resolution equals a full recompute, night after night.

Two lakes get the same bronze, written the way ingest writes it (one business date's
partition at a time, a re-sent file replacing its date's rows). One resolves
incrementally, the other recomputes everything every night; after each night every
identity table must be identical.
"""

from __future__ import annotations

import datetime as dt

import pytest

from jobs.identity.conf import IdentityConf
from jobs.identity.job import resolve
from jobs.schemas import table_schema
from tests.identity.conftest import crm_row, day, pos_row, web_row

TABLES = {
    "silver/member_xref": ["source", "source_key"],
    "silver/members": ["member_id"],
    "restricted/member_pii": ["member_id"],
    "silver/member_id_changes": ["old_member_id", "new_member_id", "as_of_date"],
    "silver/member_id_history": ["member_id"],
    "silver/identity_edges": ["src_source", "src_key", "dst_source", "dst_key", "rule"],
    "silver/blocked_identifiers": ["id_type", "value_hash", "as_of_date"],
    # The never-link chain check's state equals what a full check leaves.
    "meta/identity_components": ["id"],
    "meta/identity_refused": ["src_source", "src_key", "dst_source", "dst_key", "rule"],
}
# P and Q share a phone, Q and R a name, birth date and city, P and R hold different
# valid ID cards: the chain check refuses Q-R (tests/identity/test_never_link.py).
ID_P, ID_R = "110105198001011238", "110105199002022347"
DOB = dt.date(2001, 5, 6)


def chain_rows(d: int, **q) -> list[dict]:
    """P, Q, R as of night ``d`` (``q``: more of Q's fields)."""
    same = {"name": "alice smyth", "birth_date": DOB, "city": "sydney"}
    return [
        crm_row("P", d, name="alice smith", birth_date=DOB, city="perth", id_card_no=ID_P,
                phone="13912345678"),
        crm_row("Q", d, **same, phone="13912345678", **q),
        crm_row("R", d, **same, id_card_no=ID_R),
    ]  # fmt: skip


def put_day(ctx, name: str, rows: list[dict], n: int) -> None:
    """Replace one business date of a bronze table, as ingest does for a (re-sent) file:
    its rows stamped with this run's time."""
    assert ctx.pii_key  # generated only while the lake is new (no table yet)
    schema = table_schema(name)
    now = dt.datetime.now()
    data = [tuple({**r, "_ingested_at": now}.get(c) for c in schema.columns) for r in rows]
    df = ctx.spark.createDataFrame(data, schema.struct)
    if not ctx.lake.exists(name):
        ctx.lake.overwrite(df, name)
        return
    ctx.spark.sql(f"DELETE FROM delta.`{ctx.lake.path(name)}` WHERE _business_date = '{day(n)}'")
    if data:
        ctx.lake.append(df, name)


def snapshot(ctx) -> dict[str, list[tuple]]:
    out = {}
    for name, keys in TABLES.items():
        df = ctx.lake.read(name)
        cols = sorted(df.columns)
        collected = df.collect()
        out[name] = sorted((tuple(str(r[c]) for c in cols) for r in collected), key=lambda t: t)
        assert len({tuple(str(r[k]) for k in keys) for r in collected}) == len(out[name])
    return out


# The second pass, touched incrementally (fuzzy.max_block_size 3 in both lakes): J2 (night
# 1) and K2 (night 2, day and month of birth swapped) re-register J1 and K1 with a typo in
# the name; L1-L3 are linked by typos until L4 (night 1) makes their blocks (birth date +
# city, name prefixes) larger than 3: a full recompute compares them no more.
def typo_rows(d: int) -> list[dict]:
    person = {"birth_date": dt.date(1990, 1, 1), "city": "adelaide"}
    if d == 0:
        return [
            crm_row("J1", 0, name="jonathan carbone", birth_date=dt.date(1980, 3, 4),
                    city="melbourne", phone="13711110001"),
            crm_row("K1", 0, name="maria gonzales", birth_date=dt.date(1975, 6, 11),
                    city="brisbane", phone="13711110002"),
            *[crm_row(f"L{i}", 0, name=f"peter {last}", phone=f"1374{i}000000{i}", **person)
              for i, last in ((1, "jones"), (2, "jomes"), (3, "jonis"))],
        ]  # fmt: skip
    if d == 1:
        return [
            crm_row("J2", 1, name="jonathan carbne", birth_date=dt.date(1980, 3, 4),
                    city="melbourne", phone="13711110003"),
            crm_row("L4", 1, name="peter jonas", phone="13744000004", **person),
        ]  # fmt: skip
    return [crm_row("K2", 2, name="maria gonzalez", birth_date=dt.date(1975, 11, 6),
                    city="brisbane", phone="13711110004")]  # fmt: skip


# Bronze per night: (crm rows, pos rows, web rows) of that business date.
def nights() -> list[tuple[list[dict], list[dict], list[dict]]]:
    n0 = (
        [
            crm_row("A", 0, phone="13700000001", member_card_no="KA"),
            crm_row("B", 0, phone="13700000002", member_card_no="KB", web_user_id="uB"),
            # C and D share a phone by a clerk's mistake: one member until D is corrected.
            crm_row("C", 0, phone="13700000004"),
            crm_row("D", 0, phone="13700000004", email="d@x.com"),
            *[crm_row(f"H{i}", 0, email="family@x.com") for i in (1, 2, 3)],
            *chain_rows(0),
            *typo_rows(0),
        ],
        [
            pos_row("o1", 0, member_card_no="KA", phone="13700000001"),
            pos_row("o2", 0, member_card_no="KG", phone="13700000006"),
            pos_row("o3", 0, phone="13700000007"),
        ],
        [
            web_row("e1", "a1", 0, event_type="login", user_id="uB"),
            web_row("e2", "a2", 0),
        ],
    )
    # A new member (F); B's card with A's phone at the till: A and B merge (A is older);
    # D is corrected to its own phone: C and D split; a fourth record with the family
    # e-mail: the e-mail becomes junk, the H's part (two splits more).
    n1 = (
        [
            crm_row("F", 1, phone="13700000009"),
            crm_row("D", 1, phone="13700000005", email="d@x.com"),
            crm_row("H4", 1, email="FAMILY@x.com "),
            *typo_rows(1),
        ],
        [
            pos_row("o4", 1, member_card_no="KB", phone="13700000001"),
            pos_row("o5", 1, phone="13700000007"),
            pos_row("o7", 1, phone="13700000007"),
        ],
        [web_row("e3", "a2", 1, event_type="login", user_id="uF"), web_row("e4", "a3", 1)],
    )
    # Q's new version adds an e-mail: P-Q-R is checked again, Q-R refused again.
    n2 = (
        [chain_rows(2, email="q@x.com")[1], *typo_rows(2)],
        [pos_row("o6", 2, member_card_no="KF", phone="13700000009")],
        [],
    )
    return [n0, n1, n2]


# Night 2 also re-sends day 0's POS file (late data): o2 is gone (the KG-phone link with
# it) and o8 is new.
RESENT_DAY0_POS = [
    pos_row("o1", 0, member_card_no="KA", phone="13700000001"),
    pos_row("o3", 0, phone="13700000007"),
    pos_row("o8", 0, member_card_no="KC", phone="13700000004"),
]


def test_incremental_nights_equal_full_recompute(make_ctx, settings, tmp_path):
    lakes = {}
    for mode in ("inc", "full"):
        s = settings.model_copy(
            update={"paths": settings.paths.model_copy(update={"lake": tmp_path / f"lake_{mode}"})}
        )
        lakes[mode] = s
    base = IdentityConf()
    small_blocks = {"fuzzy": base.fuzzy.model_copy(update={"max_block_size": 3})}
    confs = {
        "inc": base.model_copy(update=small_blocks),
        "full": base.model_copy(update={**small_blocks, "incremental": False}),
    }
    figs: dict[str, list[dict]] = {"inc": [], "full": []}
    for n, (crm, pos, web) in enumerate(nights()):
        for mode, s in lakes.items():
            ctx = make_ctx(day(n), settings=s)
            put_day(ctx, "bronze/crm_members", crm, n)
            put_day(ctx, "bronze/pos_lines", pos, n)
            put_day(ctx, "bronze/web_events", web, n)
            if n == 2:
                put_day(ctx, "bronze/pos_lines", RESENT_DAY0_POS, 0)
            figs[mode].append(resolve(ctx, confs[mode]))
        inc, full = (make_ctx(day(n), settings=lakes[m]) for m in ("inc", "full"))
        assert snapshot(inc) == snapshot(full), f"night {n}"

    modes = [f["mode"] for f in figs["inc"]]
    assert modes == ["full", "incremental", "incremental"]
    assert all(f["mode"] == "full" for f in figs["full"])
    # The scenario really merges, splits and re-reads only what changed: night 1 merges
    # A and B, splits C from D and the H's from each other (the junk e-mail), and L1-L3
    # (their blocks grew above 3).
    assert (figs["inc"][1]["merges"], figs["inc"][1]["splits"]) == (1, 5)
    assert figs["inc"][1]["blocked_values"] == 1
    assert figs["inc"][2]["touched_dates"] == {"pos_lines": 2, "web_events": 0}
    assert figs["inc"][2]["merges"] + figs["inc"][2]["splits"] == 0
    # Night 1 re-clusters only the components it touches, not the whole graph, and
    # checks only those for never-link chains; night 2 re-checks P-Q-R.
    assert figs["inc"][1]["cc_nodes"] < figs["full"][1]["cc_nodes"]
    assert [f["chain_check"] for f in figs["inc"]] == ["all"] + ["touched"] * 2
    for n in (1, 2):
        assert figs["inc"][n]["chain_nodes_checked"] < figs["full"][n]["chain_nodes_checked"]
    assert all(f["refused_merges"] == 1 for f in figs["inc"] + figs["full"])
    # The second pass of nights 1 and 2 compares the touched records' pairs only.
    assert [f["second_pass"] for f in figs["inc"]] == ["full", "incremental", "incremental"]
    assert all(0 < figs["inc"][n]["second_pass_pairs"] for n in (1, 2))

    # A rerun of the last date on unchanged bronze: nothing read, nothing written.
    ctx = make_ctx(day(2), settings=lakes["inc"])
    versions = {t: ctx.lake.version(t) for t in ctx.lake.tables()}
    again = resolve(ctx, confs["inc"])
    assert again["mode"] == "noop" and again["splits"] == 0 and again["members"] > 0
    assert {t: ctx.lake.version(t) for t in ctx.lake.tables()} == versions
    # A compaction of bronze rewrites files, not rows: still nothing to do.
    from deltalake import DeltaTable

    schema = table_schema("bronze/pos_lines")
    late = {**pos_row("o99", 2, member_card_no="KZ"), "_ingested_at": dt.datetime.now()}
    for mode in ("inc", "full"):  # a second file in day 2, in both lakes
        c = make_ctx(day(2), settings=lakes[mode])
        one = c.spark.createDataFrame([tuple(late.get(k) for k in schema.columns)], schema.struct)
        c.lake.append(one, "bronze/pos_lines")
        assert resolve(c, confs[mode])["mode"] == mode.replace("inc", "incremental")
    before = ctx.lake.version("bronze/pos_lines")
    DeltaTable(ctx.lake.path("bronze/pos_lines")).optimize.compact()
    assert ctx.lake.version("bronze/pos_lines") > before
    assert resolve(ctx, confs["inc"])["mode"] == "noop"

    # A backfill of an earlier date falls back to the full path, then the next night
    # catches up incrementally.
    for mode in ("inc", "full"):
        ctx = make_ctx(day(1), settings=lakes[mode])
        assert resolve(ctx, confs[mode])["mode"] == "full"
    ctx_inc = make_ctx(day(2), settings=lakes["inc"])
    ctx_full = make_ctx(day(2), settings=lakes["full"])
    assert resolve(ctx_inc, confs["inc"])["mode"] == "incremental"
    resolve(ctx_full, confs["full"])
    assert snapshot(ctx_inc) == snapshot(ctx_full)

    # A new date that brings no identity change: the identity tables get no commit, and
    # no golden record is recomputed.
    ctx = make_ctx(day(3), settings=lakes["inc"])
    kept = ("silver/member_xref", "silver/members", "restricted/member_pii",
            "silver/identity_edges")  # fmt: skip
    chain = ("meta/identity_components", "meta/identity_refused")
    versions = {t: ctx.lake.version(t) for t in kept + chain}
    quiet = resolve(ctx, confs["inc"])
    assert quiet["mode"] == "incremental" and quiet["golden_members"] == 0
    assert quiet["rows_changed"] == {t: 0 for t in kept}
    assert quiet["chain_nodes_checked"] == 0
    assert quiet["chain_rows_changed"] == {t: 0 for t in chain}
    # ... and runs no second-pass comparison.
    assert quiet["second_pass"] == "skipped" and quiet["second_pass_pairs"] == 0
    assert quiet["second_rows_changed"] == {"meta/identity_junk_pairs": 0}
    assert {t: ctx.lake.version(t) for t in kept + chain} == versions


# Blocks crossing fuzzy.max_block_size (3) either way: L1-L3 are linked by typos; L4
# (night 1) joins every block they share, which grows over the cap and held their edges,
# so their blocks are read again (``touched``); L4's next version (night 2) leaves them,
# the blocks shrink under the cap and L1-L3, untouched, are compared again
# (``regrouped``) and linked as before.
def crossing_rows(d: int) -> list[dict]:
    person = {"birth_date": dt.date(1990, 1, 1), "city": "adelaide"}
    if d == 0:
        return [crm_row(f"L{i}", 0, name=f"peter {last}", phone=f"1374{i}000000{i}", **person)
                for i, last in ((1, "jones"), (2, "jomes"), (3, "jonis"))]  # fmt: skip
    if d == 1:
        return [crm_row("L4", 1, name="peter jonas", phone="13744000004", **person)]
    return [crm_row("L4", 2, name="quentin zhao", phone="13744000004",
                    birth_date=dt.date(1970, 7, 7), city="darwin")]  # fmt: skip


def test_blocks_crossing_the_cap_either_way_equal_full_recompute(make_ctx, settings, tmp_path):
    base = IdentityConf()
    small_blocks = {"fuzzy": base.fuzzy.model_copy(update={"max_block_size": 3})}
    confs = {
        "inc": base.model_copy(update=small_blocks),
        "full": base.model_copy(update={**small_blocks, "incremental": False}),
    }
    lakes = {
        mode: settings.model_copy(
            update={"paths": settings.paths.model_copy(update={"lake": tmp_path / mode})}
        )
        for mode in confs
    }
    crossing, linked = [], []
    for n in range(3):
        for mode, s in lakes.items():
            ctx = make_ctx(day(n), settings=s)
            put_day(ctx, "bronze/crm_members", crossing_rows(n), n)
            figures = resolve(ctx, confs[mode])
            if mode == "inc":
                crossing.append(figures.get("second_pass_crossing"))
                xref = ctx.lake.read("silver/member_xref").filter("source = 'crm'").collect()
                members = {r.source_key: r.member_id for r in xref}
                linked.append(len({members[f"L{i}"] for i in (1, 2, 3)}) == 1)
        inc, full = (make_ctx(day(n), settings=lakes[m]) for m in ("inc", "full"))
        assert snapshot(inc) == snapshot(full), f"night {n}"
    assert crossing == [None, "touched", "regrouped"]
    assert linked == [True, False, True]


def test_breaker_trip_on_an_incremental_night_then_full_recompute(make_ctx, monkeypatch):
    """The circuit breaker stops a night that would change too many member ids before it
    writes a member, and names a cluster; the operator accepts the changes. A tripped
    night has already refreshed the per-date parts; the next run must not trust them
    against the old state, so it recomputes in full (and gets it right)."""
    from jobs.identity.assign import CircuitBreakerTripped
    from jobs.identity.conf import BreakerConf

    crm = [crm_row(f"A{i}", 0, phone=f"1370000{i:04d}", member_card_no=f"K{i}") for i in range(12)]
    ctx0 = make_ctx(day(0))
    put_day(ctx0, "bronze/crm_members", crm, 0)
    put_day(ctx0, "bronze/pos_lines", [], 0)
    put_day(ctx0, "bronze/web_events", [], 0)
    strict = IdentityConf(circuit_breaker=BreakerConf(max_change_share=0.01, min_changes=2))
    first = resolve(ctx0, strict)
    # The first run never trips (no existing members), however strict the breaker.
    assert first["mode"] == "full" and first["members"] == 12
    version = ctx0.lake.version("silver/member_xref")
    # Day 1: six tills pair card 2i with the phone of record 2i+1: six merges of 12 members.
    pos = [pos_row(f"o{i}", 1, member_card_no=f"K{2 * i}", phone=f"1370000{2 * i + 1:04d}")
           for i in range(6)]  # fmt: skip
    ctx1 = make_ctx(day(1))
    put_day(ctx1, "bronze/pos_lines", pos, 1)
    with pytest.raises(CircuitBreakerTripped, match=r"6 member id changes .* 12 existing") as e:
        resolve(ctx1, strict)
    # It stops before writing: the members and their id changes are as they were.
    assert "cluster crm:A" in str(e.value)
    assert ctx1.lake.version("silver/member_xref") == version
    assert ctx1.lake.read("silver/member_id_changes").count() == 0
    # The operator can accept the changes after checking them.
    monkeypatch.setenv("CDP_IDENTITY_ACCEPT_CHANGES", "1")
    figures = resolve(make_ctx(day(1)), strict)
    assert figures["mode"] == "full" and "parts" in figures["mode_reason"]
    assert figures["merges"] == 6 and figures["members"] == 6
    # ... and the night after is incremental again.
    put_day(ctx1, "bronze/pos_lines", [pos_row("o9", 2, phone="13900000001")], 2)
    assert resolve(make_ctx(day(2)), strict)["mode"] == "incremental"


def test_forget_erases_the_identity_state_and_forces_a_full_run(make_ctx):
    """The per-date parts hold cards, phone keys (and raw phones, in restricted/) and web
    ids: `cdp forget` finds them by their source/key columns, and the next run, seeing
    the erased silver tables, recomputes in full."""
    from jobs.identity.state import LINK_PARTS, POS_PARTS, WEB_ID_PARTS
    from jobs.privacy.erasure import forget

    ctx = make_ctx(day(0))
    put_day(ctx, "bronze/crm_members", [
        crm_row("A", 0, phone="13700000001", member_card_no="KA", web_user_id="uA"),
        crm_row("B", 0, phone="13700000002", member_card_no="KB"),
    ], 0)  # fmt: skip
    put_day(ctx, "bronze/pos_lines", [
        pos_row("o1", 0, member_card_no="KA", phone="13700000001"),
        pos_row("o2", 0, member_card_no="KB", phone="13700000002"),
    ], 0)  # fmt: skip
    put_day(ctx, "bronze/web_events", [web_row("e1", "dA", 0, event_type="login", user_id="uA")], 0)
    assert resolve(ctx, IdentityConf())["mode"] == "full"
    assert ctx.lake.read(POS_PARTS).count() == 2

    forget(make_ctx(day(0)), phone="137 0000 0001", recompute=False)
    pos = {r["order_id"] for r in ctx.lake.read(POS_PARTS).collect()}
    assert pos == {"o2"}
    assert ctx.lake.read(LINK_PARTS).count() == 0
    assert {r["source_key"] for r in ctx.lake.read(WEB_ID_PARTS).collect()} == set()

    figures = resolve(make_ctx(day(0)), IdentityConf())
    assert figures["mode"] == "full" and figures["members"] == 1
    keys = {r["source_key"] for r in ctx.lake.read("silver/member_xref").collect()}
    assert "KA" not in keys and "KB" in keys
