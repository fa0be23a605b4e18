"""Configuration errors fail the run at its start, naming the file and the key.

Each case copies conf/ to a temporary folder, breaks one thing, points
CDP_CONF_DIR at it and runs the CLI in a subprocess: one line on stderr, no
traceback, non-zero exit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from jobs.config import CONF_DIR
from tests.reliability.cli import cdp_env, one_line_error, run_cdp

D = "2026-11-05"


def _edit(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(conf: Path) -> None:
        data = yaml.safe_load((conf / name).read_text(encoding="utf-8"))
        change(data)
        (conf / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    return apply


def _set_tag_when(data: dict) -> None:
    data["tags"][0]["when"] = "r_score >= AND f_score"


def _set_segment_where(data: dict) -> None:
    data["segments"][0]["where"] = "no_such_column > 3"


CASES = {
    # name: (break conf, cdp arguments, words the one line must hold)
    "unknown_key": (
        _edit("pipeline.yaml", lambda d: d["ingest"].update(max_quarantine_rte=0.1)),
        ["run", "--date", D],
        ["pipeline.yaml", "ingest.max_quarantine_rte"],
    ),
    "bad_value": (
        _edit("pipeline.yaml", lambda d: d["engine"].update(kind="duckdb")),
        ["check-conf"],
        ["pipeline.yaml", "engine.kind"],
    ),
    "missing_path": (
        _edit("pipeline.yaml", lambda d: d["paths"].pop("work")),
        ["run", "--date", D],
        ["pipeline.yaml", "paths.work"],
    ),
    "missing_file": (
        lambda conf: (conf / "pipeline.yaml").unlink(),
        ["run", "--date", D],
        ["pipeline.yaml", "not found"],
    ),
    "not_yaml": (
        lambda conf: (conf / "pipeline.yaml").write_text("paths: [unclosed\n"),
        ["run", "--date", D],
        ["pipeline.yaml", "not valid YAML"],
    ),
    "bad_tag_sql": (
        _edit("tags.yaml", _set_tag_when),
        ["run", "--date", D, "--steps", "tags"],
        ["tags.yaml", "high_value"],
    ),
    "bad_segment_sql": (
        _edit("segments.yaml", _set_segment_where),
        ["run", "--date", D, "--steps", "exports"],
        ["segments.yaml", "win_back_dormant", "no_such_column"],
    ),
    "unknown_segment_key": (
        _edit("segments.yaml", lambda d: d["segments"][0].update(chanel="sms")),
        ["run", "--date", D, "--steps", "exports"],
        ["segments.yaml", "segments.0.chanel"],
    ),
    "unknown_maintenance_key": (
        _edit("maintenance.yaml", lambda d: d.update(retention_hour=1)),
        ["maintain"],
        ["maintenance.yaml", "retention_hour"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_error_is_one_line_naming_file_and_key(tmp_path, case):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    breaker, args, words = CASES[case]
    breaker(conf)
    (tmp_path / "lake").mkdir()
    env = cdp_env(tmp_path, CDP_CONF_DIR=str(conf))
    if case == "missing_path":
        del env["CDP_WORK"]  # the variable would fill the gap the file leaves
    proc = run_cdp(args, env)
    line = one_line_error(proc)
    for w in words:
        assert w in line, (w, line)


def test_production_config_without_key_refuses_to_start(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    _edit(
        "pipeline.yaml",
        lambda d: d["privacy"].update(
            create_key_if_missing=False, key_file=str(tmp_path / "nokey" / "pii.key")
        ),
    )(conf)
    for s in ("pos", "web", "crm"):  # a complete day: only the key is missing
        d = tmp_path / "landing" / s / D
        d.mkdir(parents=True)
        (d / "_SUCCESS").write_text("")
    env = cdp_env(tmp_path, CDP_CONF_DIR=str(conf))
    del env["CDP_PII_KEY"]
    proc = run_cdp(["run", "--date", D], env)
    line = one_line_error(proc)
    assert "CDP_PII_KEY" in line
    assert "[ingest_pos" not in proc.stdout  # refused before the first step
    assert not (tmp_path / "nokey" / "pii.key").exists()
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("_delta_log"))
