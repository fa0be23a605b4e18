"""Fuzzy edges join at most fuzzy.max_cluster_records CRM records (default 8): a chain of
sequential-looking records is cut, a person registered six times stays whole, and
identifier edges are never refused by the cap."""

from __future__ import annotations

from collections import Counter

from jobs.identity.components import LinkProfile, refuse_merges
from jobs.identity.job import run
from tests.identity.conftest import crm_row, day, xref_map

NO_PROFILE = LinkProfile(None, None, None)


def test_cap_refuses_only_fuzzy_edges_that_would_exceed_it():
    nodes = [f"crm:{i}" for i in range(6)]
    profiles = {n: NO_PROFILE for n in nodes}
    edges = [(nodes[i], nodes[i + 1], "medium") for i in range(5)]  # a chain 0-1-2-3-4-5
    edges.append(("crm:5", "pos_phone:p", "low"))  # a non-record node counts for nothing
    out = refuse_merges(edges, profiles, max_records=3, capped=range(6))
    assert out == type(out)(never_link=[], cap=[2])  # 0-1-2 | 3-4-5, 2-3 would make 6
    # Exact (uncapped) edges always merge, even past the cap; the capped ones then cannot.
    exact = [(nodes[i], nodes[i + 1], "high") for i in range(4)]
    out = refuse_merges([*exact, ("crm:4", "crm:5", "medium")], profiles, max_records=3,
                        capped=[4])  # fmt: skip
    assert out.cap == [4] and out.never_link == []
    # No cap: nothing refused.
    assert refuse_merges(edges, profiles, capped=range(6)).cap == []


def test_never_link_is_checked_before_the_cap():
    profiles = {"crm:a": LinkProfile("idA", None, None), "crm:b": LinkProfile("idB", None, None)}
    out = refuse_merges([("crm:a", "crm:b", "low")], profiles, max_records=1, capped=[0])
    assert out.never_link == [0] and out.cap == []


def _gray_suffixes(n: int) -> list[str]:
    """n four-letter strings, each one letter from the next (sequential-looking)."""
    letters, out = list("aaaa"), []
    for k in range(n):
        out.append("".join(letters))
        letters[k % 4] = chr(ord(letters[k % 4]) + 1)
    return out


def test_chain_of_sequential_records_is_capped_a_true_person_stays_whole(make_ctx, write_bronze):
    dob, person_dob = day(-9000), day(-12000)
    chain = [
        crm_row(f"S{k:02d}", name=f"marguerite {s}", birth_date=dob, city="canberra")
        for k, s in enumerate(_gray_suffixes(20))
    ]
    person = [
        crm_row(f"P{k}", name=name, birth_date=person_dob, city="hobart")
        for k, name in enumerate(
            ["olivia brennan", "olivia brenan", "olivia brennen", "olvia brennan",
             "brennan olivia", "olivia brennann"]
        )
    ]  # fmt: skip
    # Two more registrations share a phone (an identifier edge) with P0: the cap of 8
    # is reached by 6 + 2, the identifier edges are never refused. (Their birth date
    # agrees: other names and no birth date on a shared phone is a family's, never-link.)
    person[0]["phone"] = "13912345678"
    person += [
        crm_row(f"Q{k}", name=f"unrelated{k} person", phone="13912345678", birth_date=person_dob)
        for k in (1, 2)
    ]
    ctx = make_ctx(day(0))
    write_bronze(ctx, crm=chain + person)
    figures = run(ctx)
    x = xref_map(ctx)
    sizes = Counter(x[("crm", r["crm_id"])] for r in chain)
    assert max(sizes.values()) <= 8 and sum(sizes.values()) == 20 and len(sizes) >= 3
    assert None not in sizes
    assert len({x[("crm", r["crm_id"])] for r in person}) == 1
    assert figures["refused_merges_cap"] >= 1
    assert figures["refused_merges_cap"] <= figures["refused_merges"]
