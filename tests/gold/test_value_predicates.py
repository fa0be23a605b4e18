"""Member value in the rules: tag, lifecycle and segment predicates see p_alive and the bands."""

from __future__ import annotations

from pyspark.sql import functions as F

from jobs.exports.segments import load_segments, segment_view, validate_predicates
from jobs.gold.conf import (
    LifecycleConf,
    LifecycleRule,
    TagRule,
    TagsConf,
    validate_lifecycle,
    validate_tags,
)
from jobs.gold.tags import tag_input, tags
from jobs.gold.value_view import with_value
from tests.gold.conftest import D, member
from tests.gold.test_value import synthetic_orders


def _on_d(ctx, name: str):
    return ctx.lake.read(name).where(F.col("as_of_date") == F.lit(D))


def test_tags_lifecycle_and_segments_can_use_member_value(spark, make_ctx, silver, run_gold):
    ctx = make_ctx(D)
    orders = synthetic_orders(120, seed=11)
    buyers = sorted({o["member_id"] for o in orders if o["member_id"]})
    silver(ctx, orders=orders, members=[member(m) for m in buyers] + [member("P")])
    run_gold(ctx, "features", "value", "rfm", "tags", "lifecycle")
    value = {r["member_id"]: r for r in _on_d(ctx, "gold/member_value").collect()}
    assert {r["clv_band"] for r in value.values()} == {"top", "middle", "low"}

    # A tag rule on the value columns passes the load-time check and tags the right members.
    lapsing = TagsConf(
        tags=[TagRule(name="lapsing_top", when="clv_band = 'top' AND p_alive < 0.9")]
    )
    validate_tags(spark, lapsing)
    tag_in = with_value(
        ctx, tag_input(_on_d(ctx, "gold/member_features"), _on_d(ctx, "gold/member_rfm"))
    )
    tagged = {r["member_id"] for r in tags(tag_in, lapsing).collect()}
    want = {m for m, r in value.items() if r["clv_band"] == "top" and r["p_alive"] < 0.9}
    assert tagged == want and want

    # A lifecycle rule may read them too (the shipped at_risk/churned rules are unchanged).
    validate_lifecycle(spark, LifecycleConf(rules=[LifecycleRule(stage="x", when="p_alive < 0.5")]))

    # The shipped segments, the new one included, analyse against the view and select by value.
    conf = load_segments(spark=spark)
    segment = next(s for s in conf.segments if s.name == "high_value_lapsing")
    view = segment_view(
        with_value(ctx, _on_d(ctx, "gold/member_features")),
        _on_d(ctx, "gold/member_rfm"),
        _on_d(ctx, "gold/member_lifecycle"),
        _on_d(ctx, "gold/member_tags"),
        ctx.lake.read("silver/members"),
    )
    validate_predicates(view, conf, "conf/segments.yaml")
    chosen = {r["member_id"] for r in view.where(F.expr(segment.where)).collect()}
    m_scores = {r["member_id"]: r["m_score"] for r in _on_d(ctx, "gold/member_rfm").collect()}
    want = {
        m
        for m, r in value.items()
        if m_scores.get(m, 0) >= 4 and r["churn_risk"] in ("medium", "high")
    }
    assert chosen == want and want
    prospect = view.where(F.col("member_id") == "P").collect()[0]
    assert prospect["p_alive"] is None and prospect["clv_band"] is None
