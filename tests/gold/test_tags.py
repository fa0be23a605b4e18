"""gold/member_tags: every default rule on both sides of its threshold, bad rules, changes."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from jobs.config import ConfigError
from jobs.gold.conf import load_tags
from tests.gold.conftest import D, day, line_of, member, order


def _view(eid: str, member_id: str, offset: int) -> dict:
    return {
        "event_id": eid,
        "event_ts": f"{day(offset)} 10:00:00",
        "event_date": day(offset),
        "member_id": member_id,
        "event_type": "product_view",
        "channel": "web",
    }


def _tags(ctx, as_of: dt.date = D) -> dict[str, set[str]]:
    """tag -> members holding it on ``as_of``."""
    out: dict[str, set[str]] = {}
    df = ctx.lake.read("gold/member_tags").filter(F.col("as_of_date") == F.lit(as_of))
    for r in df.collect():
        out.setdefault(r["tag"], set()).add(r["member_id"])
    return out


def test_high_value(make_ctx, silver, run_gold):
    from tests.gold.test_rfm import _orders

    ctx = make_ctx(D)
    silver(ctx, orders=_orders(), members=[member(m) for m in ("M1", "M2", "M3", "M4", "M5", "Z")])
    run_gold(ctx, "features", "rfm", "tags")
    # scores (test_rfm): M4 4/4/4, M5 5/5/5; M3 1/3/3, M1 and M2 2/1/1, Z 1/1/1
    assert _tags(ctx)["high_value"] == {"M4", "M5"}


def test_default_tags(make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    orders = [
        # price_sensitive: discount exactly 30% of list value vs 29%
        order("ps1", "PS", -300, 70.0, gross=100.0, discount=30.0),
        order("pn1", "PSNO", -300, 71.0, gross=100.0, discount=29.0),
        # omnichannel: store + online in 365d; OMNO's online order is at D-365
        order("om1", "OM", -300, 10.0),
        order("om2", "OM", -364, 10.0, channel="app"),
        order("on1", "OMNO", -300, 10.0),
        order("on2", "OMNO", -365, 10.0, channel="web"),
        # category_lover: 60% of line spend vs 59%, over 3 purchases; one purchase is
        # not evidence enough (CLFEW), and no category is not a category (UNK)
        *[order(f"cl{i}", "CL", -300 - i, 100.0) for i in range(3)],
        *[order(f"cn{i}", "CLNO", -300 - i, 100.0) for i in range(3)],
        order("cf1", "CLFEW", -300, 100.0, category="美妆"),
        *[order(f"uk{i}", "UNK", -300 - i, 100.0) for i in range(3)],
        # night_owl: 2 of 4 purchases at night vs 1 of 3; 1 of 1 is too little evidence
        order("n1", "NO", -300, 10.0, time="22:00:00"),
        order("n2", "NO", -301, 10.0, time="04:00:00"),
        order("n3", "NO", -302, 10.0),
        order("n4", "NO", -303, 10.0),
        order("x1", "NONO", -300, 10.0, time="03:00:00"),
        order("x2", "NONO", -301, 10.0),
        order("x3", "NONO", -302, 10.0),
        order("nf1", "NOFEW", -300, 10.0, time="23:00:00"),
        # lapsed_browser: views in 7 days; last purchase D-30 (LB) vs D-29 (LBNO)
        order("lb1", "LB", -30, 10.0),
        order("lx1", "LBNO", -29, 10.0),
    ]
    lines = [line_of(o) for o in orders if o["member_id"] not in ("CL", "CLNO", "UNK")]
    for o in orders:
        if o["member_id"] == "CL":
            lines += [line_of(o, 1, "美妆", 60.0), line_of(o, 2, "家居", 40.0)]
        elif o["member_id"] == "CLNO":
            lines += [line_of(o, 1, "美妆", 59.0), line_of(o, 2, "家居", 41.0)]
        elif o["member_id"] == "UNK":
            lines.append({**line_of(o), "category": None})
    events = [_view("v1", "LB", -6), _view("v2", "LBNO", 0), _view("v3", "VIEW_ONLY", -1)]
    ids = sorted({o["member_id"] for o in orders} | {"VIEW_ONLY"})
    members = [member(m) for m in ids] + [
        member("BD", birth_month=6),
        member("BDNO", birth_month=7),
    ]
    silver(ctx, orders=orders, members=members, lines=lines, events=events)
    figures = run_gold(ctx, "features", "rfm", "tags")
    t = _tags(ctx)
    assert t["price_sensitive"] == {"PS"}
    assert t["omnichannel"] == {"OM"}
    assert t["birthday_month"] == {"BD"}  # D is in June
    assert t["category_lover:美妆"] == {"CL"}
    assert "CLNO" not in set().union(*(v for k, v in t.items() if k.startswith("category_")))
    assert t["night_owl"] == {"NO"}
    assert t["lapsed_browser"] == {"LB", "VIEW_ONLY"}  # a browser who never bought too
    # of the members buying a single category, only those with 3+ purchases love it
    assert t["category_lover:生鲜"] == {"NO", "NONO"}
    assert t["category_lover:美妆"] == {"CL"}
    lovers = {k for k in t if k.startswith("category_lover")}
    assert lovers == {"category_lover:生鲜", "category_lover:美妆"}  # no ...:unknown
    assert figures["tags"]["by_rule"]["category_lover:{top_category}"] == 3
    # no previous date yet: no changes
    assert figures["tags"]["previous_as_of_date"] is None
    assert ctx.lake.read("gold/member_tag_changes").count() == 0


@pytest.mark.parametrize(
    ("when", "name", "message"),
    [
        ("no_such_column > 1", "bad_column", "bad_column"),
        ("frequency_30d >", "bad_syntax", "bad_syntax"),
        ("frequency_30d + 1", "not_boolean", "not boolean"),
        ("frequency_30d > 1", "x:{no_such}", "placeholder"),
    ],
)
def test_bad_rule_rejected_naming_it(spark, tmp_path, when, name, message):
    (tmp_path / "tags.yaml").write_text(
        f"tags:\n  - name: ok\n    when: frequency_30d > 0\n"
        f"  - name: '{name}'\n    when: '{when}'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=message) as err:
        load_tags(spark, tmp_path)
    assert name in str(err.value) and "tags.yaml" in str(err.value)


def test_shipped_rules_load(spark):
    names = [t.name for t in load_tags(spark).tags]
    for required in (
        "high_value",
        "price_sensitive",
        "omnichannel",
        "birthday_month",
        "category_lover:{top_category}",
        "night_owl",
        "lapsed_browser",
    ):
        assert required in names


def test_tag_changes_against_previous_date(make_ctx, silver, run_gold):
    prev = D - dt.timedelta(days=1)
    orders = [order(f"y{i}", "Y", 0, 10.0) for i in range(3)]  # Y's first purchases: on D
    events = [_view("v1", "X", -7)]  # in X's 7 days on D-1, not on D
    ctx_prev, ctx = make_ctx(prev), make_ctx(D)
    silver(ctx, orders=orders, members=[member("X"), member("Y")], events=events)
    run_gold(ctx_prev, "features", "rfm", "tags")
    figures = run_gold(ctx, "features", "rfm", "tags")
    assert _tags(ctx_prev, prev) == {"lapsed_browser": {"X"}}
    changes = {
        (r["member_id"], r["tag"], r["change"], r["previous_as_of_date"])
        for r in ctx.lake.read("gold/member_tag_changes").collect()
    }
    assert changes == {
        ("X", "lapsed_browser", "exited", prev),
        ("Y", "category_lover:生鲜", "entered", prev),  # 3 purchases: evidence enough
        # not high_value: the only buyer ranks first, and rank 1 of 1 scores 1 (CONTRACT 4)
    }
    assert figures["tags"]["entered"] == 1 and figures["tags"]["exited"] == 1


@pytest.mark.parametrize("first", ["lover:{top_category}", "lover:生鲜"])
def test_a_tag_two_rules_give_is_named_by_the_first_rule(spark, tmp_path, first):
    from jobs.gold.tags import tags

    second = "lover:生鲜" if first == "lover:{top_category}" else "lover:{top_category}"
    (tmp_path / "tags.yaml").write_text(
        f"tags:\n  - name: '{first}'\n    when: frequency_30d > 0\n"
        f"  - name: '{second}'\n    when: frequency_30d > 0\n",
        encoding="utf-8",
    )
    conf = load_tags(spark, tmp_path)
    tag_in = spark.createDataFrame(
        [("M1", D, "生鲜", 2), ("M2", D, "美妆", 1), ("M3", D, "生鲜", 0)],
        "member_id string, as_of_date date, top_category string, frequency_30d long",
    )
    got = {(r.member_id, r.tag, r.rule) for r in tags(tag_in, conf).collect()}
    assert got == {
        ("M1", "lover:生鲜", first),
        ("M2", "lover:美妆", "lover:{top_category}"),
        ("M2", "lover:生鲜", "lover:生鲜"),
    }
