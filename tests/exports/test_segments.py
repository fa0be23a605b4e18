"""Segment exports over small hand-written Delta tables that follow schemas/*.yaml."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from jobs.config import ConfigError
from jobs.exports import segments as seg_mod
from jobs.exports.segments import Segment, load_segments, write_export
from jobs.schemas import table_schema

D = dt.date(2026, 3, 9)


def _rows(name: str, rows: list[dict]) -> list[dict]:
    cols = table_schema(name).columns
    unknown = {k for r in rows for k in r} - set(cols)
    assert not unknown, f"{name}: {unknown}"
    return [{c: r.get(c) for c in cols} for r in rows]


def _write(ctx, name: str, rows: list[dict]) -> None:
    df = ctx.spark.createDataFrame(_rows(name, rows), table_schema(name).struct)
    ctx.lake.overwrite(df, name)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# member_id: (stage, frequency_total, tags, top_category, sms, email, push, status, phone, email)
MEMBERS = {
    "M1": ("dormant", 3, [], None, True, False, False, "active", "13812348000", None),
    "M2": ("dormant", 2, [], None, False, True, True, "active", "13800138001", None),
    "M3": ("dormant", 5, [], None, True, True, True, "closed", "13800138002", None),
    "M4": ("new", 1, [], None, False, True, False, "active", None, "new@qq.com"),
    "M5": (
        "active",
        2,
        ["lapsed_browser"],
        "美妆",
        True,
        False,
        False,
        "active",
        "13900001111",
        "x@y.com",
    ),
    "M6": (
        "active",
        1,
        ["lapsed_browser"],
        "美妆",
        False,
        True,
        False,
        "active",
        "13900002222",
        " Foo@Bar.COM ",
    ),
    "M7": (
        "active",
        1,
        ["lapsed_browser"],
        "美妆",
        False,
        False,
        True,
        "active",
        "13900003333",
        "z@y.com",
    ),
    "M8": (
        "active",
        4,
        ["lapsed_browser"],
        "生鲜",
        True,
        True,
        True,
        "active",
        "13900004444",
        None,
    ),
}


@pytest.fixture()
def lake_d(make_ctx):
    ctx = make_ctx(D)
    feats, rfm, life, tags, members, pii = [], [], [], [], [], []
    for mid, (stage, freq, tg, top, sms, email, push, status, phone, mail) in MEMBERS.items():
        base = {"member_id": mid, "as_of_date": D}
        feats.append(
            {
                **base,
                "frequency_total": freq,
                "top_category": top,
                "viewed_categories_7d": [top] if top else [],  # lapsed_browsers_beauty
                "tier": "bronze",
            }
        )
        rfm.append({**base, "rfm_segment": "Lost", "r_score": 1, "f_score": 1, "m_score": 1})
        life.append({**base, "stage": stage})
        tags += [{**base, "tag": t, "rule": t} for t in tg]
        members.append(
            {
                "member_id": mid,
                "crm_id": f"C{mid}",
                "status": status,
                "opt_in_sms": sms,
                "opt_in_email": email,
                "opt_in_push": push,
                "phone_masked": phone and phone[:3] + "****" + phone[-4:],
                "email_masked": "m***@x.com" if mail else None,
                "phone_hash": "hmac-not-for-export",
                "as_of_date": D,
            }
        )
        pii.append(
            {"member_id": mid, "phone": phone, "email": mail, "name": "张三", "as_of_date": D}
        )
    # A stale row of yesterday must not leak into D's export.
    feats.append({"member_id": "M2", "as_of_date": D - dt.timedelta(days=1), "frequency_total": 9})
    _write(ctx, "gold/member_features", feats)
    _write(ctx, "gold/member_rfm", rfm)
    _write(ctx, "gold/member_lifecycle", life)
    _write(ctx, "gold/member_tags", tags)
    _write(ctx, "silver/members", members)
    _write(ctx, "restricted/member_pii", pii)
    return ctx


def _csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_exports_honour_consent_and_hash_identifiers(lake_d):
    out = seg_mod.run(lake_d)
    day = lake_d.settings.paths.exports / D.isoformat()
    assert (day / "_SUCCESS").exists()

    # sms: dormant with >= 2 purchases, opted in to sms, not closed -> only M1.
    win = _csv(day / "win_back_dormant.csv")
    assert [r["member_id"] for r in win] == ["M1"]
    assert win[0]["phone_masked"] == "138****8000" and win[0]["crm_id"] == "CM1"
    assert set(win[0]) == {
        "member_id",
        "segment",
        "as_of_date",
        "stage",
        "tier",
        "rfm_segment",
        "crm_id",
        "phone_masked",
    }
    assert [r["member_id"] for r in _csv(day / "welcome_new.csv")] == ["M4"]

    # ads: M5 by phone only (no email consent), M6 by email only, M7 no consent, M8 not beauty.
    ads = {r["member_id"]: r for r in _csv(day / "lapsed_browsers_beauty.csv")}
    assert set(ads) == {"M5", "M6"}
    assert ads["M5"]["phone_sha256"] == _sha("+8613900001111")
    assert ads["M5"]["email_sha256"] == ""
    assert ads["M6"]["phone_sha256"] == ""
    assert ads["M6"]["email_sha256"] == _sha("foo@bar.com")
    assert set(ads["M5"]) == {
        "member_id",
        "segment",
        "as_of_date",
        "stage",
        "tier",
        "rfm_segment",
        "phone_sha256",
        "email_sha256",
    }
    # No raw PII nor keyed hashes anywhere in the published files.
    blob = "".join(p.read_text(encoding="utf-8", errors="replace") for p in day.glob("*.csv"))
    for raw in ("13812348000", "13900001111", "x@y.com", "Foo@Bar", "张三", "hmac-not-for-export"):
        assert raw not in blob
    assert out["segments"]["win_back_dormant"] == 1
    assert out["segments"]["lapsed_browsers_beauty"] == 2


def test_manifest_checksums_and_rows_match_files(lake_d, spark):
    seg_mod.run(lake_d)
    day = lake_d.settings.paths.exports / D.isoformat()
    manifest = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["as_of_date"] == "2026-03-09"
    assert manifest["previous_export"] is None
    shipped = {s.name for s in load_segments().segments}
    assert {s["name"] for s in manifest["segments"]} == shipped
    assert all(s["where"] and s["channel"] for s in manifest["segments"])
    names = {f["path"] for f in manifest["files"]}
    assert names == {
        f"{s}{ext}" for s in shipped for ext in (".csv", ".parquet", ".entered.csv", ".exited.csv")
    }
    for f in manifest["files"]:
        path = day / f["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == f["sha256"], f["path"]
        if f["format"] == "csv":
            assert len(_csv(path)) == f["rows"], f["path"]
        else:
            assert spark.read.parquet(str(path)).count() == f["rows"], f["path"]
    # First export: everyone entered, nobody exited.
    by = {(f["segment"], f["kind"]): f["rows"] for f in manifest["files"]}
    assert by[("lapsed_browsers_beauty", "entered")] == 2
    assert by[("lapsed_browsers_beauty", "exited")] == 0
    # A re-run of the same date replaces the export with the same rows.
    seg_mod.run(lake_d)
    again = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    assert [(f["path"], f["rows"]) for f in again["files"]] == [
        (f["path"], f["rows"]) for f in manifest["files"]
    ]
    assert again["previous_export"] is None  # compared with the day before, not itself
    assert not [p for p in day.parent.iterdir() if p.name.startswith(".")]


def test_failed_export_leaves_last_good_one(lake_d, monkeypatch):
    seg_mod.run(lake_d)
    root = lake_d.settings.paths.exports
    day = root / D.isoformat()
    before = {p.name: p.read_bytes() for p in day.iterdir()}

    real = seg_mod._single_file
    calls = []

    def failing(df, fmt, target, scratch):
        calls.append(target.name)
        if target.name == "birthday_month.csv":  # written by priority after win_back_dormant
            raise OSError("disk full (injected)")
        return real(df, fmt, target, scratch)

    monkeypatch.setattr(seg_mod, "_single_file", failing)
    with pytest.raises(OSError, match="injected"):
        seg_mod.run(lake_d)
    assert "win_back_dormant.csv" in calls  # it failed mid-write, not before starting
    assert {p.name: p.read_bytes() for p in day.iterdir()} == before
    assert sorted(p.name for p in root.iterdir()) == [D.isoformat()]  # no temp folder left


def test_entered_exited_rekeyed_through_merges(spark, settings, tmp_path):
    root = settings.paths.exports
    seg = Segment(name="vip", channel="push", where="tier = 'gold'")

    def view(ids):
        return spark.createDataFrame(
            [(m, "gold", "mature", "Champions") for m in ids],
            "member_id string, tier string, stage string, rfm_segment string",
        )

    contacts = spark.createDataFrame(
        [
            (m, f"C{m}", "active", False, False, True, None, None, None, None, False, False)
            for m in ("A", "B", "C", "E")
        ],
        "member_id string, crm_id string, status string, opt_in_sms boolean, "
        "opt_in_email boolean, opt_in_push boolean, phone_masked string, email_masked string, "
        "phone_sha256 string, email_sha256 string, has_mobile boolean, has_email boolean",
    )
    changes_schema = table_schema("silver/member_id_changes").struct
    no_changes = spark.createDataFrame([], changes_schema)
    d1, d2 = dt.date(2026, 3, 8), dt.date(2026, 3, 9)
    write_export(spark, view(["A", "B", "C"]), contacts, no_changes, [seg], root, d1, "r1")

    # On d2, A merged into B; the gold tables of d2 still carry a stale row for A too.
    changes = spark.createDataFrame([("A", "B", "merge", d2, "same phone")], changes_schema)
    m = write_export(spark, view(["A", "B", "E"]), contacts, changes, [seg], root, d2, "r2")
    day = root / d2.isoformat()
    assert sorted(r["member_id"] for r in _csv(day / "vip.csv")) == ["B", "E"]  # B once
    assert [r["member_id"] for r in _csv(day / "vip.entered.csv")] == ["E"]
    assert [r["member_id"] for r in _csv(day / "vip.exited.csv")] == ["C"]  # not A
    assert m["previous_export"] == "2026-03-08"


def test_bad_predicates_fail_at_load_naming_segment_and_file(spark, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "segments.yaml").write_text(
        "segments:\n"
        "  - {name: ok_one, channel: sms, where: \"stage = 'new'\"}\n"
        "  - {name: typo_col, channel: email, where: \"stagee = 'new'\"}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_segments(conf, spark)
    assert "typo_col" in str(err.value) and str(conf / "segments.yaml") in str(err.value)

    (conf / "segments.yaml").write_text(
        "segments:\n  - {name: not_bool, channel: sms, where: recency_days + 1}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="not_bool.*boolean"):
        load_segments(conf, spark)
    (conf / "segments.yaml").write_text(
        "segments:\n  - {name: bad_syntax, channel: sms, where: \"stage = = 'x'\"}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="bad_syntax"):
        load_segments(conf, spark)
    (conf / "segments.yaml").write_text(
        "segments:\n  - {name: x, channel: fax, where: 'true'}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="channel"):
        load_segments(conf)


def test_shipped_segments_are_valid(spark):
    conf = load_segments(spark=spark)
    assert {s.channel for s in conf.segments} == {"sms", "email", "push", "ads", "preferred"}
    assert len(conf.segments) >= 6


def _add_dormant_members(ctx, n: int) -> None:
    """``n`` more members of win_back_dormant (sms consent), written in a shuffled order."""
    import random

    ids = [f"W{i:04d}" for i in range(n)]
    random.Random(7).shuffle(ids)
    base = {"as_of_date": D}
    feats = [{**base, "member_id": m, "frequency_total": 3, "tier": "bronze"} for m in ids]
    rfm = [{**base, "member_id": m, "rfm_segment": "Lost", "r_score": 1} for m in ids]
    life = [{**base, "member_id": m, "stage": "dormant"} for m in ids]
    members = [
        {
            "member_id": m,
            "crm_id": f"C{m}",
            "status": "active",
            "opt_in_sms": True,
            "phone_masked": "138****0000",
            "as_of_date": D,
        }  # fmt: skip
        for m in ids
    ]
    # A usable mobile each (sms needs consent AND a contact).
    pii = [{"member_id": m, "phone": f"1391{i:07d}", "as_of_date": D} for i, m in enumerate(ids)]
    for name, rows in (
        ("gold/member_features", feats),
        ("gold/member_rfm", rfm),
        ("gold/member_lifecycle", life),
        ("silver/members", members),
        ("restricted/member_pii", pii),
    ):
        df = ctx.spark.createDataFrame(_rows(name, rows), table_schema(name).struct)
        ctx.lake.append(df.repartition(4), name)


def test_two_runs_of_a_day_write_identical_files(lake_d, spark):
    """Issue 12 item 8: rows in a defined order, the same bytes and SHA-256 twice."""
    _add_dormant_members(lake_d, 300)
    root = lake_d.settings.paths.exports
    day = root / D.isoformat()
    seg_mod.run(lake_d)
    first = json.loads((day / "manifest.json").read_text(encoding="utf-8"))
    (day).rename(root / "first-run")  # not a date: not taken as the previous export
    seg_mod.run(lake_d)
    second = json.loads((day / "manifest.json").read_text(encoding="utf-8"))

    assert second["files"] == first["files"]  # path, rows, bytes and SHA-256 of every file
    assert second["segments"] == first["segments"]
    for f in second["files"]:
        assert (day / f["path"]).read_bytes() == (root / "first-run" / f["path"]).read_bytes()
    # The defined order: by member_id, in both formats.
    ids = [r["member_id"] for r in _csv(day / "win_back_dormant.csv")]
    assert len(ids) == 301 and ids == sorted(ids)
    import pyarrow.parquet as pq

    table = pq.read_table(day / "win_back_dormant.parquet")
    assert table.column("member_id").to_pylist() == ids
    assert not (table.schema.metadata or {})  # no engine metadata (versions, run details)
    # The manifest itself names its run: only run_id and generated_at may differ.
    differ = {k for k in first if first[k] != second[k]}
    assert differ <= {"run_id", "generated_at"}


def test_dead_run_folders_are_removed_or_put_back(tmp_path):
    from jobs.exports.files import remove_dead_run_folders

    root = tmp_path / "exports"
    for name in (
        ".tmp-2026-03-09-0123456789ab",  # a run that died while writing
        ".old-2026-03-08-01234567",  # swap interrupted after the new one was in place
        ".old-2026-03-07-89abcdef",  # swap interrupted before: the export must come back
        "2026-03-08",
        ".keep-me",
        ".tmp-not-ours",
    ):
        (root / name).mkdir(parents=True)
        (root / name / "a.csv").write_text("member_id\nM1\n")
    removed = remove_dead_run_folders(root)
    assert removed == [".old-2026-03-08-01234567", ".tmp-2026-03-09-0123456789ab"]
    assert sorted(p.name for p in root.iterdir()) == [
        ".keep-me",
        ".tmp-not-ours",
        "2026-03-07",
        "2026-03-08",
    ]
    assert (root / "2026-03-07" / "_SUCCESS").exists()
    assert (root / "2026-03-07" / "a.csv").read_text() == "member_id\nM1\n"


def test_export_killed_mid_write_is_cleaned_by_the_next_run(lake_d, tmp_path):
    """Issue 12 item 7: SIGKILL while segment files are written, then a rerun."""
    from tests.reliability.cli import cdp_env, run_cdp

    root = lake_d.settings.paths.exports
    args = ["run", "--date", D.isoformat(), "--steps", "exports"]
    killed = run_cdp(args, cdp_env(tmp_path, CDP_FAULT_KILL_AT="exports/win_back_dormant"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert len(left) == 1 and (left[0] / "win_back_dormant.csv").exists()  # member rows
    assert not (root / D.isoformat()).exists()

    rerun = run_cdp(args, cdp_env(tmp_path))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "left by a run that died" in rerun.stderr
    assert sorted(p.name for p in root.iterdir()) == [D.isoformat()]
    assert (root / D.isoformat() / "_SUCCESS").exists()


def test_columns_read_keeps_what_candidates_and_predicates_name(spark):
    """The export materialises only the view's columns it reads: the candidates' own and
    every column a predicate names (back-quoted or not, any case); a word inside a quoted
    string may keep a column, a column no predicate names is dropped."""
    from jobs.exports.view import CANDIDATE_COLUMNS, columns_read

    names = [*CANDIDATE_COLUMNS, "frequency_90d", "Tags", "m_score", "city", "weird col", "unused"]
    view = spark.createDataFrame([], ", ".join(f"`{n}` string" for n in names))
    segs = [
        Segment(name="a", channel="sms", where="FREQUENCY_90D >= 1 AND array_contains(tags, 'x')"),
        Segment(name="b", channel="email", where="`weird col` = 'city'"),
    ]
    assert columns_read(view, segs) == [
        *CANDIDATE_COLUMNS,
        "frequency_90d",
        "Tags",
        "city",
        "weird col",
    ]
    assert columns_read(view, segs[:1]) == [*CANDIDATE_COLUMNS, "frequency_90d", "Tags"]
