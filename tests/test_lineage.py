"""jobs.lineage: what a step read and wrote, and when an earlier run's summary still holds."""

from __future__ import annotations

import shutil

from jobs import config, lineage
from jobs.lake import Lake


def test_lake_reads_and_writes_are_noted_with_their_versions(spark, tmp_path):
    lake = Lake(spark, tmp_path / "lake")
    df = spark.createDataFrame([(1, "a")], "k int, v string")
    lake.overwrite(df, "meta/in", conform_schema=False)
    lake.append(df, "meta/in", conform_schema=False)  # version 1
    with lineage.recording() as seen:
        rows = lake.read("meta/in").collect()
        assert not lake.exists("meta/none")  # no such table yet
        lake.overwrite(df, "meta/out", conform_schema=False)
        lake.read("meta/out").count()  # read back after its write: an output, not an input
    assert len(rows) == 2
    assert seen.reads == {
        lake.path("meta/in"): 1,
        lake.path("meta/none"): lineage.MISSING,
        lake.path("meta/out"): 0,  # read back after its write
    }
    assert seen.writes == {lake.path("meta/out")}
    summary = seen.summary("d", lineage.table_version)
    assert summary["reads"] == {lake.path("meta/in"): 1, lake.path("meta/none"): -1}
    assert summary["writes"] == {lake.path("meta/out"): 0}
    lake.read("meta/in")  # outside a recording nothing is noted
    assert lineage._active is None


def test_a_summary_holds_until_a_version_a_file_or_the_digest_moves(tmp_path):
    out = tmp_path / "segment.csv"
    out.write_text("member_id\nM1\n")
    versions = {"/lake/silver/orders": 4, "/lake/gold/rfm": 7}
    summary = {
        "digest": "d1",
        "reads": {"/lake/silver/orders": 4},
        "writes": {"/lake/gold/rfm": 7},
        "files": {str(out): lineage.file_digest(str(out)), str(tmp_path / "m.json"): "exists"},
    }
    (tmp_path / "m.json").write_text("{}")
    assert lineage.unchanged(summary, "d1", versions.get) is None
    assert lineage.unchanged(summary, "d2", versions.get) == (
        "code, configuration or settings changed"
    )
    (tmp_path / "m.json").write_text('{"report": 1}')  # only its presence counts
    assert lineage.unchanged(summary, "d1", versions.get) is None
    out.write_text("member_id\nM2\n")
    assert lineage.unchanged(summary, "d1", versions.get) == f"{out} changed or is gone"
    out.write_text("member_id\nM1\n")
    versions["/lake/gold/rfm"] = 8
    assert lineage.unchanged(summary, "d1", versions.get) == "/lake/gold/rfm at version 8, not 7"
    versions["/lake/gold/rfm"] = 7
    (tmp_path / "m.json").unlink()
    assert lineage.unchanged(summary, "d1", versions.get) == f"{tmp_path / 'm.json'} is gone"


def test_an_edited_rule_file_changes_the_run_digest(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(config.CONF_DIR, conf)
    monkeypatch.setattr(config, "CONF_DIR", conf)
    before = lineage.run_digest("{}")
    assert lineage.run_digest("{}") == before
    rfm = conf / "rfm.yaml"
    rfm.write_text(rfm.read_text() + "\n# a comment is an edit too\n")
    assert lineage.run_digest("{}") != before
    assert lineage.run_digest('{"other": "settings"}') != lineage.run_digest("{}")
