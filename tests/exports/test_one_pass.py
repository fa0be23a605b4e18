"""All segments of a night in one pass (issue 11): the windowed frequency cap equals the
sequential rule, and the engine actions of write_export do not grow with the segments."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest

from jobs.exports import segments as seg_mod
from jobs.exports.segments import FrequencyCap, Segment, write_export
from jobs.schemas import table_schema

D1, D2 = dt.date(2026, 3, 8), dt.date(2026, 3, 9)


def sequential_cap(
    ordered: list[Segment], members: dict[str, set[str]], prior: dict[str, int], max_exports: int
) -> set[tuple[str, str, bool]]:
    """The cap as the export step applied it segment after segment before issue 11:
    a member is capped in a segment when prior + their exports in the segments already
    written that day >= max_exports; (segment, member, capped)."""
    exported: Counter[str] = Counter()
    out = set()
    for seg in ordered:
        for member in sorted(members[seg.name]):
            capped = prior.get(member, 0) + exported[member] >= max_exports
            exported[member] += not capped
            out.add((seg.name, member, capped))
    return out


def test_windowed_cap_equals_the_sequential_rule(spark):
    # Ties in priority (10, 20) keep file order; some members have no prior row.
    priorities = {"s_a": 20, "s_b": 10, "s_c": 20, "s_d": 10, "s_e": 30, "s_f": 20}
    segments = [
        Segment(name=n, channel="push", where="true", priority=p) for n, p in priorities.items()
    ]
    ordered = seg_mod.by_priority(segments)
    assert [s.name for s in ordered] == ["s_b", "s_d", "s_a", "s_c", "s_f", "s_e"]
    rng = random.Random(11)
    ids = [f"M{i}" for i in range(12)]
    members = {s.name: {m for m in ids if rng.random() < 0.6} for s in segments}
    prior = {m: rng.choice([0, 1, 2, 3]) for m in ids[:9]}
    kept = spark.createDataFrame(
        [(m, s.name, order) for order, s in enumerate(ordered) for m in members[s.name]],
        "member_id string, export_segment string, export_order int",
    )
    prior_df = spark.createDataFrame(list(prior.items()), "member_id string, n_prior long")
    for max_exports in (1, 2, 3):
        cap = FrequencyCap(max_exports=max_exports)
        got = {
            (r["export_segment"], r["member_id"], r["capped"])
            for r in seg_mod.capped_rows(kept, prior_df, cap).collect()
        }
        assert got == sequential_cap(ordered, members, prior, max_exports), max_exports
        assert any(c for *_, c in got) and not all(c for *_, c in got)  # the cap bites
    uncapped = seg_mod.capped_rows(kept, prior_df, None).collect()
    assert len(uncapped) == kept.count() and not any(r["capped"] for r in uncapped)


def _view(spark, ids: list[str]):
    return spark.createDataFrame(
        [(m, "gold" if i % 2 else "silver", "mature", "Champions") for i, m in enumerate(ids)],
        "member_id string, tier string, stage string, rfm_segment string",
    )


def _contacts(spark, ids: list[str]):
    return spark.createDataFrame(
        [
            (
                m,
                f"C{m}",
                "active",
                True,
                i % 3 > 0,
                True,
                "138****0000",
                "a***@qq.com",
                None,
                None,
                True,
                True,
            )
            for i, m in enumerate(ids)
        ],  # fmt: skip
        "member_id string, crm_id string, status string, opt_in_sms boolean, "
        "opt_in_email boolean, opt_in_push boolean, phone_masked string, email_masked string, "
        "phone_sha256 string, email_sha256 string, has_mobile boolean, has_email boolean",
    )


def _segments(copies: int) -> list[Segment]:
    """``copies`` times the same three segments (three channels), as distinct segments."""
    return [
        Segment(name=f"{kind}_{i}", channel=channel, where=where, priority=10 * i)
        for i in range(copies)
        for kind, channel, where in (
            ("vip", "push", "tier = 'gold'"),
            ("all", "sms", "true"),
            ("mail", "email", "tier = 'silver'"),
        )
    ]


@pytest.fixture()
def count_executions(monkeypatch):
    """Counter of Spark Connect executions (the plans the engine runs: actions, writes)."""
    from pyspark.sql.connect.client import core

    counts: Counter[str] = Counter()
    for name in ("_execute_and_fetch_as_iterator", "_execute"):
        real = getattr(core.SparkConnectClient, name)

        def counted(self, *args, _real=real, **kwargs):
            counts["executions"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(core.SparkConnectClient, name, counted)
    return counts


def test_write_export_actions_do_not_grow_with_segments(spark, tmp_path, count_executions):
    ids = [f"M{i}" for i in range(8)]
    changes = spark.createDataFrame(
        [("M1", "M2", "merge", D2, "same phone")], table_schema("silver/member_id_changes").struct
    )
    prior = spark.createDataFrame([("M3", 2), ("M4", 1)], "member_id string, n_prior long")
    cap = FrequencyCap(max_exports=2)
    view, contacts = _view(spark, ids), _contacts(spark, ids)
    executions = {}
    for copies in (1, 2):
        root = tmp_path / f"x{copies}"
        segments = _segments(copies)
        write_export(spark, view, contacts, changes, segments, root, D1, "r1", prior, cap)
        count_executions.clear()
        manifest = write_export(
            spark, view, contacts, changes, segments, root, D2, "r2", prior, cap
        )
        executions[copies] = count_executions["executions"]
        assert manifest["previous_export"] == D1.isoformat()
        assert len(manifest["files"]) == 4 * len(segments)
        capped = sum(s["dropped"]["capped"] for s in manifest["segments"])
        assert capped > 0 and sum(s["dropped"]["merged"] for s in manifest["segments"]) > 0
    # 3 segments or 6: the same 17 queries (2 inputs, candidates, reached rows, the merge
    # map since the previous export, the previous export's rows and the exited rows per
    # channel, the entered rows, one collect, one Parquet write, a CSV write per channel).
    assert executions[2] == executions[1], executions
    assert executions[1] <= 17, executions


def test_segment_whose_channel_changed_exits_in_its_previous_columns(spark, tmp_path):
    """The exited file holds rows of the previous export, in that export's columns."""
    import csv

    ids = ["A", "B", "C"]
    no_changes = spark.createDataFrame([], table_schema("silver/member_id_changes").struct)
    contacts = _contacts(spark, ids)
    root = tmp_path / "exports"
    by_push = Segment(name="vip", channel="push", where="true")
    write_export(spark, _view(spark, ids), contacts, no_changes, [by_push], root, D1, "r1")
    by_sms = Segment(name="vip", channel="sms", where="true")
    write_export(spark, _view(spark, ["A", "C"]), contacts, no_changes, [by_sms], root, D2, "r2")

    def read(name: str) -> list[list[str]]:
        with open(root / D2.isoformat() / name, encoding="utf-8") as fh:
            return list(csv.reader(fh))

    assert read("vip.csv")[0][-2:] == ["crm_id", "phone_masked"]
    assert [r[0] for r in read("vip.csv")[1:]] == ["A", "C"]
    exited = read("vip.exited.csv")
    assert exited[0][-1] == "crm_id" and [r[0] for r in exited[1:]] == ["B"]
    assert read("vip.entered.csv") == [read("vip.csv")[0]]  # nobody entered


def test_segment_predicates_analysed_in_one_round_trip(spark):
    """conf/segments.yaml's predicates are analysed together (at start-up and in the export
    step); a bad one is still named."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from bench.count_queries import counting
    from jobs.config import ConfigError
    from jobs.exports.conf import load_segments, validate_predicates, view_schema

    if not isinstance(spark, ConnectSession):
        pytest.skip("counted through the Spark Connect client (the embedded engine)")
    conf = load_segments()
    assert len(conf.segments) > 2
    view = spark.createDataFrame([], view_schema())
    with counting() as counter:
        validate_predicates(view, conf, "segments.yaml")
    assert sum(n for k, n in counter.by_step.items() if k[2] == "analyze") == 1
    bad = conf.model_copy(
        update={
            "segments": [*conf.segments[:2], conf.segments[2].model_copy(update={"where": "tier"})]
        }
    )
    with pytest.raises(
        ConfigError, match=f"segment {conf.segments[2].name!r}: `where` must be boolean"
    ):
        validate_predicates(view, bad, "segments.yaml")
