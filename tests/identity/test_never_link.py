"""Never-link rules hold across chains (issue 16 item 2): A-B by one rule, B-C by
another, A and C with different valid ID cards -> the weaker edge is refused."""

from __future__ import annotations

from itertools import pairwise

from pyspark.sql import functions as F

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


EDGE_SCHEMA = (
    "src_source string, src_key string, dst_source string, dst_key string, rule string, "
    "confidence string, first_seen date, last_seen date"
)


def chain_edges(spark, groups: int):
    """``groups`` components, each A -phone- B (high) and B - C (name_dob_city, medium)
    with A and C holding different valid ID cards, and one component with no conflict."""
    edges, profiles = [], []
    for g in range(groups):
        a, b, c = f"A{g}", f"B{g}", f"C{g}"
        edges += [("crm", a, "pos_phone", f"p{g}", "crm_phone", "high"),
                  ("crm", b, "pos_phone", f"p{g}", "crm_phone", "high"),
                  ("crm", b, "crm", c, "name_dob_city", "medium")]  # fmt: skip
        profiles += [(a, f"id{g}a", None, None), (b, None, None, None), (c, f"id{g}c", None, None)]
    edges += [("crm", "G", "pos_phone", "pg", "crm_phone", "high"),
              ("crm", "H", "pos_phone", "pg", "crm_phone", "high")]  # fmt: skip
    profiles += [("G", None, None, None), ("H", None, None, None)]
    seen = day(0)
    return (
        spark.createDataFrame([(*e, seen, seen) for e in edges], EDGE_SCHEMA),
        spark.createDataFrame(profiles, "crm_id string, id_card string, gender string, "
                              "birth_date date"),
    )  # fmt: skip


def with_split_limit(limit: int):
    from jobs.identity.conf import load_identity_conf

    conf = load_identity_conf()
    never = conf.never_link.model_copy(update={"max_split_edges": limit})
    return conf.model_copy(update={"never_link": never})


def test_components_to_split_go_to_the_driver_in_batches_with_the_same_refusals(spark, tmp_path):
    from jobs.identity.graph import refuse_never_link_chains
    from jobs.lake import parquet_materialiser

    edges, profiles = chain_edges(spark, groups=4)
    refused = {}
    for limit in (200_000, 3, 7):  # one batch; one component a batch; two a batch
        mat = parquet_materialiser(tmp_path / str(limit))
        kept, out, by_cap = refuse_never_link_chains(edges, profiles, with_split_limit(limit), mat)
        refused[limit] = sorted((r["src_key"], r["dst_key"]) for r in out.collect())
        assert kept.count() == edges.count() - len(refused[limit])
        assert by_cap.count() == 0
    assert refused[200_000] == [(f"B{g}", f"C{g}") for g in range(4)]
    assert refused[3] == refused[200_000] and refused[7] == refused[200_000]


def test_a_component_above_the_split_limit_fails_with_its_size(spark, tmp_path):
    import pytest

    from jobs.identity.graph import refuse_never_link_chains, split_batches
    from jobs.lake import parquet_materialiser

    assert split_batches({5: 2, 1: 3, 9: 1}, 4) == [[1], [5, 9]]
    edges, profiles = chain_edges(spark, groups=1)
    with pytest.raises(ValueError, match="holds 3 edges, more than 2"):
        refuse_never_link_chains(
            edges, profiles, with_split_limit(2), parquet_materialiser(tmp_path)
        )


def _expected_conflicts(groups: dict[str, list[tuple]], second_pass: set[str], conf) -> set[str]:
    """Reference: the groups whose CRM records hold several distinct non-null ID cards,
    or several genders and several birth dates, or more than the fuzzy cap with a
    second-pass edge (counted with Python sets, not the step's aggregates)."""
    out = set()
    for name, records in groups.items():
        ids, genders, dates = ({r[i] for r in records if r[i] is not None} for i in (1, 2, 3))
        capped = name in second_pass and len(records) > conf.fuzzy.max_cluster_records
        if len(ids) > 1 or (len(genders) > 1 and len(dates) > 1) or capped:
            out.add(name)
    return out


def test_conflicting_components_are_those_the_never_link_rules_and_the_cap_name(spark, tmp_path):
    """Each group of CRM records is one component (a chain of edges); nulls never count
    as a value of their own, and one value twice is not two."""
    from jobs.identity.conf import load_identity_conf
    from jobs.identity.graph import conflicting_components, node_id
    from jobs.lake import parquet_materialiser

    conf = load_identity_conf()
    d1, d2 = day(-9000), day(-8000)
    many = conf.fuzzy.max_cluster_records + 1
    groups = {
        "one_id_and_nulls": [("a1", "id1", None, None), ("a2", None, None, None)],
        "same_id_twice": [("b1", "id1", "M", d1), ("b2", "id1", "M", d1)],
        "two_ids": [("c1", "id1", None, None), ("c2", "id2", None, None)],
        "genders_only": [("d1", None, "M", d1), ("d2", None, "F", d1)],
        "genders_and_dates": [("e1", None, "M", d1), ("e2", None, "F", d2)],
        "gender_null_dates": [("f1", None, "M", d1), ("f2", None, None, d2)],
        "big_fuzzy": [(f"g{i}", None, None, None) for i in range(many)],
        "big_plain": [(f"h{i}", None, None, None) for i in range(many)],
    }
    second_pass = {"big_fuzzy"}
    edges, profiles = [], []
    for name, records in groups.items():
        rule = "fuzzy_name_dob" if name in second_pass else "crm_phone"
        for (a, *_), (b, *_) in pairwise(records):
            edges.append(("crm", a, "crm", b, rule, "medium", day(0), day(0)))
        profiles += records
    edge_df = spark.createDataFrame(edges, EDGE_SCHEMA)
    profile_df = spark.createDataFrame(
        profiles, "crm_id string, id_card string, gender string, birth_date date"
    )
    labels, conflicting = conflicting_components(
        edge_df, profile_df, conf, parquet_materialiser(tmp_path)
    )
    component_of = {r["id"]: r["component"] for r in labels.collect()}
    ids = profile_df.select("crm_id", node_id(F.lit("crm"), F.col("crm_id")).alias("id"))
    group_of_record = {r[0]: name for name, records in groups.items() for r in records}
    group_of = {component_of[r["id"]]: group_of_record[r["crm_id"]] for r in ids.collect()}
    found = {group_of[r["component"]] for r in conflicting.collect()}
    assert found == _expected_conflicts(groups, second_pass, conf)
    assert found == {"two_ids", "genders_and_dates", "big_fuzzy"}
