"""Each normaliser on its edge cases, evaluated by the engine (no Python re-implementation)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from jobs.identity import normalize as N


def _apply(spark, fn, values: list[str | None]) -> list:
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    rows = df.select("i", fn(F.col("v")).alias("out")).orderBy("i").collect()
    return [r["out"] for r in rows]


def test_phone_spellings_and_invalid(spark):
    values = [
        "13800138000",
        "+86 138 0013 8000",
        "138-0013-8000",
        "86-13800138000",
        "0086 13800138000",
        " 8613800138000 ",
        "(138)0013.8000",
        "12800138000",  # second digit 2: not a mobile
        "1380013800",  # 10 digits
        "138001380001",  # 12 digits
        "11111111111",
        "010-88886666",  # landline
        "138OO138000",  # letters O
        "",
        None,
        "+87 13800138000",  # other country code
    ]
    assert _apply(spark, N.norm_phone, values) == [
        "13800138000",
        "13800138000",
        "13800138000",
        "13800138000",
        "13800138000",
        "13800138000",
        "13800138000",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]


def test_email(spark):
    values = [" Zhang.San@QQ.com ", "a@b.cn", "no-at-sign.com", "a@b", "a b@c.com", "", None]
    assert _apply(spark, N.norm_email, values) == [
        "zhang.san@qq.com",
        "a@b.cn",
        None,
        None,
        None,
        None,
        None,
    ]


# Check characters computed independently in Python from the MOD 11-2 definition.
def _check_char(body: str) -> str:
    total = sum(int(d) * w for d, w in zip(body, N.ID_CARD_WEIGHTS, strict=True))
    return N.ID_CARD_CHECK[total % 11]


def test_check_char_helper_matches_known_ids():
    assert _check_char("11010519491231002") == "X"
    assert _check_char("44052418800101001") == "4"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("11010519491231002X", "11010519491231002X"),
        ("11010519491231002x", "11010519491231002X"),  # lower-case x accepted
        (" 440524188001010014 ", "440524188001010014"),
        ("440524188001010015", None),  # wrong check digit
        ("110105194912310021", None),  # digit where X is due
        ("11010519491231002", None),  # 17 chars
        ("11010519491231002XX", None),  # 19 chars
        ("A1010519491231002X", None),  # letter in the body
        ("", None),
        (None, None),
    ],
)
def test_id_card(spark, raw, expected):
    assert _apply(spark, N.norm_id_card, [raw]) == [expected]


def test_id_card_checksum_flag_distinguishes_missing_from_invalid(spark):
    df = spark.createDataFrame(
        [("11010519491231002X",), ("110105194912310021",), (None,)], "v string"
    )
    out = [r[0] for r in df.select(N.id_card_checksum_ok(N.clean_id_card(F.col("v")))).collect()]
    assert out == [True, False, None]


def test_card_and_text_ids(spark):
    assert _apply(spark, N.norm_card, [" vip-0012 ", "  ", None, "AB12"]) == [
        "VIP-0012",
        None,
        None,
        "AB12",
    ]
    assert _apply(spark, N.norm_text_id, [" u1 ", "", "U1"]) == ["u1", None, "U1"]


def test_name_and_city(spark):
    assert _apply(spark, N.norm_name, ["张 三", "张三", "  ", "Li Lei"]) == [
        "张三",
        "张三",
        None,
        "lilei",
    ]
    assert _apply(spark, N.norm_city, ["上海市", " 上海 ", None]) == ["上海", "上海", None]


FULL_WIDTH_CASES = [
    # (raw, phone, email)
    ("１３９１２３４５６７８", "13912345678", None),
    ("＋８６ １３９ １２３４ ５６７８", "13912345678", None),
    ("139\u200b1234\u00a05678", "13912345678", None),  # zero-width and no-break space
    ("\ufeff139-1234-5678\u200d", "13912345678", None),  # BOM, zero-width joiner
    ("ＷＡＮＧ＠ＱＱ．ＣＯＭ", None, "wang@qq.com"),
    ("wang@qq.com\u200b", None, "wang@qq.com"),
]


@pytest.mark.parametrize("raw, phone, email", FULL_WIDTH_CASES)
def test_full_width_and_invisible_characters_are_folded(spark, raw, phone, email):
    assert _apply(spark, N.norm_phone, [raw]) == [phone]
    assert _apply(spark, N.norm_email, [raw]) == [email]


def test_canonical_text_is_nfkc_without_invisible_characters():
    assert N.canonical_text("＋８６ １３９ １２３４ ５６７８") == "+86 139 1234 5678"
    assert N.canonical_text("ＷＡＮＧ＠ＱＱ．ＣＯＭ") == "WANG@QQ.COM"
    assert N.canonical_text("k\u200b77\u00ad") == "k77"  # zero-width space, soft hyphen
    assert N.canonical_text("139\u00a01234\u30005678") == "139 1234 5678"  # spaces to spaces
    assert N.canonical_text("①③⁹") == "139"  # compatibility digits (NFKC)
    assert N.canonical_text("张三") == "张三"
    # The Spark fold agrees with it on full-width ASCII.
    full = "".join(chr(c) for c in range(0xFF01, 0xFF5F))
    assert N.canonical_text(full) == "".join(chr(c) for c in range(0x21, 0x7F))


def test_card_and_id_card_fold_full_width(spark):
    assert _apply(spark, N.norm_card, ["ｋ\u200b７７ "]) == ["K77"]
    assert _apply(spark, N.clean_id_card, ["１１０１０１１９９００３０７００２ｘ"]) == [
        "11010119900307002X"
    ]
