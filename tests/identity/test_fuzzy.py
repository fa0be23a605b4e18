"""Fuzzy second pass (issue 16 item 3): same birth date and city, names within one edit
or in swapped order, no shared identifier; never-link rules still veto."""

from __future__ import annotations

from jobs.identity.job import run
from tests.identity.conftest import check_compare_in_slices, crm_row, day, rows, xref_map

ID_A = "110105198001011238"
ID_B = "110105199002022347"


def _records() -> list[dict]:
    dob, other = day(-9000), day(-9500)
    return [
        crm_row("F1", name="maria carbone", birth_date=dob, city="sydney"),
        crm_row("F2", name="maria carbne", birth_date=dob, city="Sydney"),
        crm_row("F3", name="maria carbone", birth_date=dob, city="perth"),  # other city
        crm_row("F4", name="maria carbone", birth_date=other, city="sydney"),  # other date
        crm_row("G1", name="ashleigh quilliam", birth_date=dob, city="melbourne"),
        crm_row("G2", name="quilliam ashleigh", birth_date=dob, city="melbourne"),
        # Short (Chinese) names: one character is a different person, not a typo.
        crm_row("H1", name="张三丰", birth_date=dob, city="上海"),
        crm_row("H2", name="张三峰", birth_date=dob, city="上海"),
        # Close names but different valid ID cards: never linked.
        crm_row("K1", name="robert jones", birth_date=dob, city="adelaide", id_card_no=ID_A),
        crm_row("K2", name="robert jone", birth_date=dob, city="adelaide", id_card_no=ID_B),
    ]


def test_fuzzy_names_link_with_same_birth_date_and_city(make_ctx, write_bronze):
    ctx = make_ctx(day(0))
    write_bronze(ctx, crm=_records())
    run(ctx)
    x = xref_map(ctx)

    def m(crm_id: str) -> str:
        return x[("crm", crm_id)]

    assert m("F1") == m("F2")
    assert len({m("F1"), m("F3"), m("F4")}) == 3
    assert m("G1") == m("G2")
    assert m("H1") != m("H2")
    assert m("K1") != m("K2")
    fuzzy = {
        (e["src_key"], e["dst_key"], e["confidence"])
        for e in rows(ctx, "silver/identity_edges")
        if e["rule"] == "fuzzy_name_dob_city"
    }
    assert fuzzy == {("F1", "F2", "medium"), ("G1", "G2", "medium")}


def test_one_edit_means_one_substitution_insertion_deletion_or_swap(spark):
    """Two substitutions that merely hold a swapped pair somewhere are two edits (synthetic
    phones 13000079190 / 13000791900 were read as one transposition and linked)."""
    from pyspark.sql import functions as F

    from jobs.identity.fuzzy import _one_edit

    cases = [
        ("13000079190", "13000791900", False),
        ("abcd", "badc", False),
        ("abc", "abc", False),
        ("8478623", "8478632", True),
        ("4562990", "4562890", True),
        ("ab", "ba", True),
        ("abc", "abcd", True),
    ]
    df = spark.createDataFrame(cases, "a string, b string, want boolean")
    got = df.select("a", "b", "want", _one_edit(F.col("a"), F.col("b")).alias("got"))
    assert [(r.a, r.b) for r in got.collect() if r.got != r.want] == []


def _block_rows(spark, records: list[tuple]) -> dict[str, list[str]]:
    """block_keys of profiles (crm_id, name tokens, birth date, city, card and
    optionally an ID card), as {crm_id: sorted blocks}."""
    import datetime as dt

    from jobs.identity.conf import load_identity_conf
    from jobs.identity.fuzzy import block_keys

    schema = (
        "crm_id string, first string, last string, name_sorted string, birth_date date, "
        "city_key string, phone string, card string, id_raw string"
    )
    fp = spark.createDataFrame(
        [(c, f, last, n, dt.date(1980, 1, 2), city, None, card, rest[0] if rest else None)
         for c, f, last, n, city, card, *rest in records],
        schema,
    )  # fmt: skip
    out: dict[str, list[str]] = {}
    for r in block_keys(fp, load_identity_conf()).collect():
        out.setdefault(r.crm_id, []).append(r.block)
    return {k: sorted(v) for k, v in out.items()}


def test_name_token_blocks_are_one_per_prefix_whichever_side(spark):
    """A one-token name sits in one birth-date + token block and one city + token block
    (not in a 'first' and a 'last' block with the same members); a swapped Latin name
    shares its token blocks with the unswapped one."""
    blocks = _block_rows(
        spark,
        [
            ("H1", "王伟", "王伟", "王伟", "上海", "88001234"),
            ("G1", "ashleigh", "quilliam", "ashleigh quilliam", "perth", None),
            ("G2", "quilliam", "ashleigh", "ashleigh quilliam", "sydney", None),
        ],
    )
    for crm_id, keys in blocks.items():
        assert len(keys) == len(set(keys)), crm_id

    def tagged(crm_id: str, tag: str) -> list[str]:
        return [b for b in blocks[crm_id] if b.startswith(tag + "|")]

    assert tagged("H1", "dt") == ["dt|1980-01-02|王伟"]
    assert tagged("H1", "ct") == ["ct|上海|王伟"]
    assert len(tagged("H1", "scard")) == 1
    assert len(tagged("H1", "mcardt")) == len("88001234")
    # Different cities: the swapped names meet in the birth date + token blocks.
    assert tagged("G1", "dt") == tagged("G2", "dt") == ["dt|1980-01-02|as", "dt|1980-01-02|qu"]
    assert set(tagged("G1", "ct")).isdisjoint(tagged("G2", "ct"))


def test_masked_card_blocks_carry_each_suffix(spark):
    """A card's masked texts (one character masked at each position) are each keyed with
    every name token's initial (one tag for both sides) and with the birth year; a record
    without a birth date or a name token gets none of those keys."""
    card = "4562990"
    masked = [card[:i] + "_" + card[i + 1 :] for i in range(len(card))]
    blocks = _block_rows(
        spark,
        [
            ("G1", "ashleigh", "quilliam", "ashleigh quilliam", "perth", card),
            ("G2", "amy", "adams", "adams amy", "perth", card),
            ("G3", None, None, None, "perth", card),
        ],
    )

    def tagged(crm_id: str, tag: str) -> set[str]:
        return {b for b in blocks.get(crm_id, []) if b.startswith(tag + "|")}

    assert tagged("G1", "mcardt") == {f"mcardt|{m}{i}" for m in masked for i in "aq"}
    assert tagged("G2", "mcardt") == {f"mcardt|{m}a" for m in masked}
    assert tagged("G3", "mcardt") == set()
    for crm_id in ("G1", "G2", "G3"):
        assert tagged(crm_id, "mcardyear") == {f"mcardyear|{m}1980" for m in masked}


def test_id_card_blocks_once_each_and_none_without_an_id(spark):
    """An ID card alone gives one key per masked character and one per distinct
    neighbour pair put in order (an ID of one repeated digit: a single such key); a
    record without an ID or card gets no ID or card key at all."""
    id_a, id_b = "110105198001011238", "1" * 18
    blocks = _block_rows(
        spark,
        [
            ("I1", "amy", "adams", "adams amy", "perth", None, id_a),
            ("I2", "amy", "adams", "adams amy", "perth", None, id_b),
            ("I3", "amy", "adams", "adams amy", "perth", None, None),
        ],
    )

    def tagged(crm_id: str, tag: str) -> list[str]:
        return [b for b in blocks[crm_id] if b.startswith(tag + "|")]

    def pair_sorted(text: str) -> set[str]:
        return {text[:i] + "".join(sorted(text[i : i + 2])) + text[i + 2 :]
                for i in range(len(text) - 1)}  # fmt: skip

    assert sorted(tagged("I1", "mid")) == sorted(
        f"mid|{id_a[:i]}_{id_a[i + 1 :]}" for i in range(18)
    )
    assert sorted(tagged("I1", "tid")) == sorted(f"tid|{t}" for t in pair_sorted(id_a))
    assert tagged("I2", "tid") == [f"tid|{id_b}"]
    assert len(tagged("I2", "mid")) == 18
    assert tagged("I1", "sid_raw") == [f"sid_raw|{''.join(sorted(id_a))}|a"]
    assert not [b for b in blocks["I3"] if b.split("|")[0] in ("mid", "tid", "sid_raw")]
    assert not [b for b in blocks["I3"] if "card" in b.split("|")[0]]
    for crm_id, keys in blocks.items():
        assert len(keys) == len(set(keys)), crm_id


def test_comparisons_in_slices_equal_one_query(spark, tmp_path):
    """The candidate pairs compared in slices (fuzzy.compare_slice_pairs, one query each,
    written to one folder) give the very rows of one query over all of them."""
    check_compare_in_slices(spark, tmp_path)


def test_scratch_slices_need_one_part(spark, tmp_path):
    import pytest

    from jobs.lake import ParquetScratch

    with pytest.raises(ValueError, match="no slice"):
        ParquetScratch(str(tmp_path)).slices(iter([]), "nothing")
