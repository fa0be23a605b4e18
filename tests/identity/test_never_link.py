"""Never-link rules hold across chains (issue 16 item 2): A-B by one rule, B-C by
another, A and C with different valid ID cards -> the weaker edge is refused."""

from __future__ import annotations

from jobs.identity.components import LinkProfile, refuse_never_link_merges
from jobs.identity.job import run
from tests.identity.conftest import crm_row, day, rows, xref_map

ID_A = "110105198001011238"
ID_B = "110105199002022347"


def test_weakest_edge_of_a_chain_is_refused():
    profiles = {
        "crm:A": LinkProfile("idA", None, None),
        "crm:B": LinkProfile(None, None, None),
        "crm:C": LinkProfile("idC", None, None),
        "crm:D": LinkProfile(None, "F", "1990-01-01"),
        "crm:E": LinkProfile(None, "M", "1991-01-01"),
    }
    edges = [
        ("crm:B", "crm:C", "medium"),  # listed first, but weaker than the phone edges
        ("crm:A", "pos_phone:p", "high"),
        ("crm:B", "pos_phone:p", "high"),
        ("crm:C", "crm:D", "low"),  # C-D fine on its own ...
        ("crm:D", "crm:E", "low"),  # ... D-E never (gender and birth date differ)
    ]
    assert refuse_never_link_merges(edges, profiles) == [0, 4]
    # The rule switched off: D-E may merge.
    assert refuse_never_link_merges(edges, profiles, gender_dob=False) == [0]


def test_chain_across_two_rules_is_split_and_reported(make_ctx, write_bronze):
    dob = day(-9000)
    ctx = make_ctx(day(0))
    write_bronze(
        ctx,
        crm=[
            # A and B share a phone (crm_phone, high); B and C have the same name, birth
            # date and city (name_dob_city, medium); A and C hold different valid IDs.
            crm_row("A", name="alice smith", birth_date=dob, city="perth", id_card_no=ID_A,
                    phone="13912345678"),
            crm_row("B", name="alice smyth", birth_date=dob, city="sydney", phone="13912345678"),
            crm_row("C", name="alice smyth", birth_date=dob, city="sydney", id_card_no=ID_B),
        ],
    )  # fmt: skip
    figures = run(ctx)
    x = xref_map(ctx)
    assert x[("crm", "A")] == x[("crm", "B")]
    assert x[("crm", "C")] != x[("crm", "A")]
    assert figures["refused_merges"] == 1
    kept = {(e["src_key"], e["dst_key"], e["rule"]) for e in rows(ctx, "silver/identity_edges")}
    assert ("B", "C", "name_dob_city") not in kept
