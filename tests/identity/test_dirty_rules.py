"""What the rules got wrong on the dirty generator (issue 16, dirty truth): a family phone
with a blank birth date linked two people; ID-card typos ingest nulled, Han names with
their characters reordered and shared values with such names were missed."""

from __future__ import annotations

from jobs.identity.job import run
from tests.identity.conftest import crm_row, day, rows, xref_map

VALID_ID = "430104198308102925"  # valid checksum
TYPO_ID = "430104198308109225"  # two digits swapped: fails it (ingest nulls the field)
SHARED_ID = "320505199807283238"  # valid, on four records: junk unless corroborated


def _records() -> list[dict]:
    dob = day(-15000)
    issue = [("id_card_no", "id_card_invalid", TYPO_ID)]
    return [
        # A family's phone: different names, one birth date blank. Two people.
        crm_row("FAM1", name="汪秀芳", gender="F", birth_date=dob, city="青岛市",
                phone="13500299646"),
        crm_row("FAM2", name="汪阳明", gender="M", city="青岛市", phone="13500299646"),
        # The same name and province, a valid ID card and its typo (kept in _field_issues).
        crm_row("T1", name="王慧静", birth_date=day(-15500), province="湖南省", city="长沙市",
                id_card_no=VALID_ID, phone="17850565335"),
        crm_row("T2", name="王慧静", province="湖南省", phone="13912340000",
                _field_issues=issue),
        # Four records on one ID card; one has the name's characters reordered.
        crm_row("J1", name="周瑞浩", city="苏州", id_card_no=SHARED_ID),
        crm_row("J2", name="周浩瑞", birth_date=day(-10000), city="苏州", id_card_no=SHARED_ID,
                phone="13605228706"),
        crm_row("J3", name="周浩瑞", city="苏州市", id_card_no=SHARED_ID),
        crm_row("J4", name="周浩瑞", birth_date=day(-10000), city="苏州", id_card_no=SHARED_ID),
        # Name tokens reordered (梅 王 / 王梅) and a phone with two digits swapped.
        crm_row("W1", name="梅 王", city="杭州市", phone="17501212222"),
        crm_row("W2", name="王梅", city="杭州市", phone="17510212222"),
    ]  # fmt: skip


def test_dirty_generator_cases(make_ctx, write_bronze):
    ctx = make_ctx(day(0))
    write_bronze(ctx, crm=_records())
    run(ctx)
    x = xref_map(ctx)

    def m(crm_id: str) -> str:
        return x[("crm", crm_id)]

    assert m("FAM1") != m("FAM2")
    assert m("T1") == m("T2")
    assert m("J1") == m("J2") == m("J3") == m("J4")
    assert m("W1") == m("W2")
    rules = {(e["src_key"], e["dst_key"]): e["rule"] for e in rows(ctx, "silver/identity_edges")
             if e["src_source"] == "crm" and e["dst_source"] == "crm"}  # fmt: skip
    assert rules[("T1", "T2")] == "fuzzy_identifier_token"
    assert rules[("W1", "W2")] == "fuzzy_agreements"
    assert rules[("J1", "J2")] == "corroborated_id_card"
