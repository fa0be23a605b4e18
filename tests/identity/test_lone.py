"""Rule ``lone_rare_name`` (jobs/identity/lone.py): a record holding only a name and a
city (or a birth date, or a province) links to the one person of its rare name there,
and the look-alikes it must leave apart: a common name, a group of two people (who
disagree, or who are not linked to each other), a record that disagrees, a record
holding its own phone, a name held in another city only. Resolved once for the module
through the identity job on real Delta tables; then a night that brings a lone record
(incremental second pass) against a full recompute of the same lake.
"""

from __future__ import annotations

import pytest

from jobs.identity.conf import IdentityConf
from jobs.identity.job import resolve, run
from jobs.identity.lone import LONE_RULE
from tests.identity.conftest import (
    crm_members_and_rules,
    crm_row,
    day,
    fresh_lake_ctx,
    rows,
    write_bronze_tables,
)
from tests.identity.test_incremental import put_day, snapshot


def _person(prefix: str, name: str, city: str, phone: str, **kw) -> list[dict]:
    """Two records of one person sharing a phone (linked by the first pass)."""
    return [crm_row(f"{prefix}{i}", name=name, city=city, phone=phone, **kw) for i in (1, 2)]


def _records() -> list[dict]:
    dob = day(-11000)
    common = [
        crm_row(f"W{i}", name="王伟", city="南京", phone=f"13{i * 37813719 % 10**9:09d}",
                birth_date=day(-9000 - 400 * i))
        for i in range(1, 10)
    ]  # fmt: skip
    return [
        # One person (reordered name in the lone record, 市 dropped): links.
        *_person("A", "晏玉珍", "青岛市", "13335990964", birth_date=dob, gender="F"),
        crm_row("A9", name="玉珍 晏", city="青岛", member_card_no="VIP00000009"),
        # The placeholder phone is no identifier: still lone, links.
        *_person("P", "张利", "西安市", "18575863841", birth_date=dob),
        crm_row("P9", name="张利", city="西安市", phone="13800000000"),
        # A name nine records bear: too common, no link.
        *common,
        crm_row("W0", name="王伟", city="南京"),
        # Two people with one rare name in one city (birth dates differ): no link.
        *_person("B", "林小燕", "苏州", "13611112222", birth_date=day(-12000)),
        *_person("C", "林小燕", "苏州", "13633334444", birth_date=day(-13000)),
        crm_row("B9", name="林小燕", city="苏州"),
        # A lone record whose gender disagrees with the person's: no link.
        *_person("G", "赵静怡", "西安", "13744445555", birth_date=dob, gender="F"),
        crm_row("G9", name="赵静怡", city="西安", gender="M"),
        # A record holding a phone of its own is not lone: no link.
        *_person("H", "钱多多", "杭州", "13755556666", birth_date=dob),
        crm_row("H9", name="钱多多", city="杭州", phone="13799998888"),
        # The name is held in another city only: no link.
        *_person("K", "孙晓燕", "北京", "13866667777", birth_date=dob),
        crm_row("K9", name="孙晓燕", city="上海"),
        # No city: the name reordered and the birth date (the group of that date): links.
        *_person("D", "何璐敏", "杭州", "13830545329", birth_date=dob, gender="F"),
        crm_row("D9", name="何敏璐", birth_date=dob, gender="F"),
        # Nothing but the name and the province: links.
        *_person("R", "王梅", "武汉市", "18965140124", birth_date=dob, province="湖北省"),
        crm_row("R9", name="王梅", province="湖北省"),
        # A phone of a family (another person holds it too) is an identifier: not lone.
        crm_row("Q1", name="王桂芳", city="北京", phone="15163852762", gender="F"),
        crm_row("Q9", name="王桂芳", city="北京市", birth_date=dob, phone="13934092475"),
        crm_row(
            "Q8",
            name="王博成",
            city="北京市",
            birth_date=day(-11500),
            gender="M",
            phone="0086 139 3409 2475",
        ),
        # Two records agreeing on everything but holding two phones: two people, no link.
        crm_row("U1", name="林晓", city="成都", phone="13911112222"),
        crm_row("U2", name="林晓", city="成都", phone="13933334444"),
        crm_row("U9", name="林晓", city="成都"),
    ]


@pytest.fixture(scope="module")
def resolved(spark, tmp_path_factory):
    """The records above resolved on day(0): (member of each crm_id, crm-crm edge rules)."""
    ctx = fresh_lake_ctx(spark, tmp_path_factory.mktemp("lone"), day(0))
    write_bronze_tables(ctx, crm=_records())
    run(ctx)
    return crm_members_and_rules(ctx)


def test_a_lone_record_links_to_the_one_person_of_its_rare_name(resolved):
    member, rules = resolved
    assert member["A1"] == member["A2"] == member["A9"]
    assert rules[("A1", "A9")] == LONE_RULE
    assert member["P1"] == member["P9"]
    assert rules[("P1", "P9")] == LONE_RULE
    assert member["D1"] == member["D9"]
    assert member["R1"] == member["R9"]


def test_look_alikes_stay_apart(resolved):
    member, rules = resolved
    assert member["W0"] not in {member[f"W{i}"] for i in range(1, 10)}
    assert member["B9"] not in {member["B1"], member["C1"]}
    assert member["B1"] != member["C1"]
    assert member["G9"] != member["G1"]
    assert member["H9"] != member["H1"]
    assert member["K9"] != member["K1"]
    assert member["U9"] not in {member["U1"], member["U2"]}
    assert member["Q9"] != member["Q1"]
    lone_edges = {pair for pair, rule in rules.items() if rule == LONE_RULE}
    assert lone_edges == {("A1", "A9"), ("P1", "P9"), ("D1", "D9"), ("R1", "R9")}


def test_a_night_bringing_a_lone_record_equals_a_full_recompute(make_ctx, settings, tmp_path):
    """Day 0: the person; day 1: its lone record arrives (linked); day 2: a look-alike
    with another birth date makes the group two people (the lone edge goes). Each night
    incremental in one lake and a full recompute in another: the same tables."""
    person = _person("A", "晏玉珍", "青岛市", "13335990964", birth_date=day(-11000))
    nights = [
        person,
        [crm_row("A9", 1, name="晏玉珍", city="青岛")],
        [crm_row("Z1", 2, name="晏玉珍", city="青岛", birth_date=day(-9000), phone="13900001111")],
    ]
    confs = {"inc": IdentityConf(), "full": IdentityConf(incremental=False)}
    lakes = {
        mode: settings.model_copy(
            update={"paths": settings.paths.model_copy(update={"lake": tmp_path / mode})}
        )
        for mode in confs
    }
    linked, modes = [], []
    for n, crm in enumerate(nights):
        for mode, s in lakes.items():
            ctx = make_ctx(day(n), settings=s)
            for name, day_rows in (("bronze/crm_members", crm), ("bronze/pos_lines", []),
                                   ("bronze/web_events", [])):  # fmt: skip
                put_day(ctx, name, day_rows, n)
            figures = resolve(ctx, confs[mode])
            if mode == "inc":
                modes.append(figures["mode"])
        inc, full = (make_ctx(day(n), settings=lakes[m]) for m in ("inc", "full"))
        assert snapshot(inc) == snapshot(full), f"night {n}"
        linked.append({(e["src_key"], e["dst_key"]) for e in rows(inc, "silver/identity_edges")
                       if e["rule"] == LONE_RULE})  # fmt: skip
    assert modes == ["full", "incremental", "incremental"]
    assert linked == [set(), {("A1", "A9")}, set()]
