"""Junk that is junk (issue 16 items 1, 2, 5): a value shared by too many records still
links the records that corroborate each other; never-link rules hold on every pass."""

from __future__ import annotations

from jobs.identity.job import run
from tests.identity.conftest import crm_row, day, rows, xref_map

ID_A = "110105198001011238"  # valid checksums
ID_B = "110105199002022347"
ID_C = "310101198511114562"
ID_D = "440301197003033454"
ID_E = "440301197504044565"
FAMILY_PHONE = "13911112222"


def _records() -> list[dict]:
    return [
        # One person registered three times with one phone (order of names swapped,
        # a typo), and two other people keying the same phone: five records > 3.
        crm_row("R1", phone=FAMILY_PHONE, name="ashleigh quilliam", birth_date=day(-9000)),
        crm_row("R2", phone=FAMILY_PHONE, name="quilliam ashleigh", birth_date=day(-9000)),
        # (R3: no birth date: a name corroborates no pair of a phone with conflicting dates)
        crm_row("R3", phone=FAMILY_PHONE, name="ashleigh quiliam"),
        crm_row("R4", phone=FAMILY_PHONE, name="王芳", birth_date=day(-12000)),
        crm_row("R5", phone=FAMILY_PHONE, name="王伟", birth_date=day(-15000)),
        # E-mail on four records: S2 has no ID card and the birth date of both S1 and S3,
        # who hold different valid ID cards. S2 must not chain them; S4 corroborates nobody.
        crm_row("S1", email="home@x.com", id_card_no=ID_A, birth_date=day(-8000)),
        crm_row("S2", email="home@x.com", birth_date=day(-8000)),
        crm_row("S3", email="home@x.com", id_card_no=ID_B, birth_date=day(-8000)),
        crm_row("S4", email="home@x.com", birth_date=day(-7000)),
        # Same name, birth date and city (second pass) but different valid ID cards.
        crm_row("T1", name="李四", birth_date=day(-6000), city="北京", id_card_no=ID_C),
        crm_row("T2", name="李四", birth_date=day(-6000), city="北京", id_card_no=ID_D),
        # A card on four records, one name: U1's gender and birth date both differ from
        # the others', so the never-link rule keeps it apart.
        *[crm_row(f"U{i}", member_card_no="SHARED1", name="alexander smith",
                  gender=g, birth_date=day(b))
          for i, (g, b) in enumerate([("M", -5000), ("F", -5100), ("M", -5000), ("M", -5200)])],
        # A family phone on three records (not too many): W1 and W2 hold different valid
        # ID cards, so the phone links nothing by itself; W3 corroborates W1 (birth date).
        crm_row("W1", phone="13633334444", id_card_no=ID_E, birth_date=day(-11000)),
        crm_row("W2", phone="13633334444", id_card_no=ID_B, birth_date=day(-13000)),
        crm_row("W3", phone="13633334444", birth_date=day(-11000)),
        # A row whose birth date was invalid: nulled in bronze, its phone still links.
        crm_row("V1", phone="13722223333", birth_date=None,
                _field_issues=[{"field": "birth_date", "rule": "bad_date", "value": "19551192"}]),
        crm_row("V2", phone="13722223333"),
    ]  # fmt: skip


def test_shared_value_links_only_corroborating_records(make_ctx, write_bronze):
    ctx = make_ctx(day(0))
    write_bronze(ctx, crm=_records())
    run(ctx)
    x = xref_map(ctx)

    def m(crm_id: str) -> str:
        return x[("crm", crm_id)]

    # Same birth date (R1, R2), name within one edit in either token order (R3).
    assert m("R1") == m("R2") == m("R3")
    assert len({m("R1"), m("R4"), m("R5")}) == 3
    # S2 would chain two different valid ID cards: it links neither.
    assert len({m("S1"), m("S2"), m("S3"), m("S4")}) == 4
    # Never-link rule on the second pass.
    assert m("T1") != m("T2")
    # U0 and U2: same gender and birth date; U1 differs in both from U0: vetoed.
    assert m("U0") == m("U2") == m("U3") != m("U1")
    assert m("V1") == m("V2")
    assert m("W1") == m("W3") != m("W2")

    blocked = {
        (r["id_type"], r["value_masked"]): r for r in rows(ctx, "silver/blocked_identifiers")
    }
    assert blocked[("phone", "139****2222")]["reason"] == "shared_by_many"
    assert blocked[("email", "h***@x.com")]["reason"] == "shared_by_many"
    assert blocked[("phone", "136****4444")]["reason"] == "never_link"
    edges = rows(ctx, "silver/identity_edges")
    corroborated = {
        (e["src_key"], e["dst_key"]) for e in edges if e["rule"] == "corroborated_phone"
    }
    assert corroborated == {("R1", "R2"), ("R1", "R3"), ("R2", "R3"), ("W1", "W3")}
    assert not [e for e in edges if e["rule"] == "corroborated_email"]
    assert all(e["confidence"] == "high" for e in edges if e["rule"].startswith("corroborated_"))


def test_a_records_versions_count_once_towards_shared_by_many(spark):
    """A value is shared_by_many when more than junk.max_crm_records_per_value (3)
    *records* hold it, however many versions each has: three records with four versions
    of one phone are not junk, four records are. Against counts made in Python."""
    from jobs.identity.conf import IdentityConf
    from jobs.identity.graph import blocked_values

    conf = IdentityConf()
    limit = conf.junk.max_crm_records_per_value
    holders = {"three": limit, "four": limit + 1}
    ids = [
        (f"{phone}-{r}", v == 3, day(v), "phone", phone, True, f"k-{phone}")
        for phone, n in holders.items()
        for r in range(n)
        for v in range(4)
    ]
    crm_ids = spark.createDataFrame(
        ids,
        "crm_id string, is_latest boolean, seen date, id_type string, value string, "
        "valid boolean, key string",
    )
    orders = spark.createDataFrame(
        [], "order_id string, order_date date, card string, phone string, phone_key string"
    )
    edges = spark.createDataFrame(
        [], "src_source string, src_key string, dst_source string, dst_key string"
    )
    blocked = blocked_values(spark, crm_ids, orders, edges, conf, b"k" * 32).collect()
    expected = {f"k-{p}": n for p, n in holders.items() if n > limit}
    assert {r.key: r.n_crm_records for r in blocked} == expected == {"k-four": limit + 1}
    assert {r.reason for r in blocked} == {"shared_by_many"}
