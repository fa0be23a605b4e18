"""The `cdp` command line as a user meets it: exit codes, help, refusals before any write.

Commands that start the engine run in a subprocess (``python -m jobs.cli``), the way a
shell or Airflow runs them; the others call ``jobs.cli.main`` in this process (with the
engine's shutdown disabled, so the test session's engine survives). Either way the exit
code is what a script sees.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from jobs import cli
from jobs.config import CONF_DIR
from jobs.pipeline import STEPS
from tests.reliability.cli import cdp_env, run_cdp

D = "2026-11-05"
IN_ENGINE = {"forget", "eval-identity"}  # these start the engine: run in a subprocess


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def cdp(tmp_path, monkeypatch, capsys):
    """``cdp <args>`` -> Result, in this process unless the command starts the engine."""
    env = cdp_env(tmp_path)

    def invoke(args: list[str]) -> Result:
        if args and args[0] in IN_ENGINE:
            proc = run_cdp(args, env, timeout=300)
            return Result(proc.returncode, proc.stdout, proc.stderr)
        for key, value in env.items():
            if key.startswith("CDP_"):
                monkeypatch.setenv(key, value)
        monkeypatch.setattr("jobs.engine.stop", lambda: None)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            cli.main(args)
        out = capsys.readouterr()
        return Result(exit_.value.code, out.out, out.err)

    return invoke


def _corrupt_table(lake: Path) -> None:
    log = lake / "gold" / "broken" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("this is not a Delta log\n")


# command: (arguments, set-up of the base folder, words the error must hold)
ERRORS = {
    "run_slashes": (["run", "--date", "2026/11/29"], None, ["YYYY-MM-DD"]),
    "run_no_such_day": (["run", "--date", "2026-02-30"], None, ["YYYY-MM-DD"]),
    "run_unknown_step": (["run", "--date", D, "--steps", "nope"], None, ["nope", "ingest_pos"]),
    "generate": (
        ["generate", "--out", "{base}/g", "--end-date", "2026-13-01"],
        None,
        ["--end-date"],
    ),
    "eval_identity": (["eval-identity", "--truth", "{base}/no_truth"], None, []),
    "sql_format": (["sql", "SELECT 1", "--format", "xlsx"], None, ["--format"]),
    "sql_write": (["sql", "DELETE FROM gold.kpi_daily"], None, ["DELETE", "refused"]),
    "serve_public_host": (["serve", "--host", "0.0.0.0"], None, ["loopback"]),
    "forget_nothing": (["forget"], None, []),
    "maintain_broken_table": (["maintain"], _corrupt_table, ["gold/broken"]),
    "rules_unknown_source": (["rules", "--source", "foo"], None, ["pos, web, crm"]),
    "history_unknown_table": (["history", "gold.nope"], None, ["gold.nope"]),
    "describe_unknown_table": (["describe", "gold.nope"], None, ["gold.nope"]),
    "unknown_command": (["nope"], None, ["nope"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_every_command_exits_non_zero_on_error(tmp_path, cdp, case):
    args, setup, words = ERRORS[case]
    if setup:
        setup(tmp_path / "lake")
    proc = cdp([a.replace("{base}", str(tmp_path)) for a in args])
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)


def test_no_arguments_prints_help_and_version_is_the_package_version(tmp_path):
    from importlib.metadata import version

    proc = run_cdp([], cdp_env(tmp_path))  # a real process: the entry point's exit code
    assert proc.returncode == 0, proc.stderr
    assert "Usage: cdp" in proc.stdout and "check-conf" in proc.stdout
    assert "Error" not in proc.stdout + proc.stderr
    proc = run_cdp(["--version"], cdp_env(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == f"cdp {version('cdp-pipeline')}"


def test_help_shows_flags_as_flags_and_explains_every_option(cdp):
    top = cdp(["--help"]).stdout
    commands = re.findall(r"^  ([a-z][a-z-]+)\s", top.split("Commands:")[1], re.MULTILINE)
    assert {"run", "forget", "sql", "history", "describe", "check-conf"} <= set(commands)
    for command in commands:
        out = cdp([command, "--help"]).stdout
        assert "<bool>" not in out and "BOOLEAN" not in out, (command, out)
    run_help = cdp(["run", "--help"]).stdout
    assert re.search(r"--allow-incomplete\s+run although", run_help)
    flat = " ".join(run_help.split())
    assert all(step.name in flat for step in STEPS)
    forget_help = cdp(["forget", "--help"]).stdout
    for option in ("--member", "--phone", "--email", "--crm-id"):
        assert re.search(rf"{option} <str>\s+\S", forget_help), (option, forget_help)


def test_rules_for_an_unknown_source_lists_the_valid_ones(cdp):
    proc = cdp(["rules", "--source", "foo"])
    assert proc.returncode == 2
    assert "Errno" not in proc.stderr
    assert "unknown source 'foo'; sources are: pos, web, crm" in proc.stderr


def test_run_refused_for_missing_folders_names_each_and_creates_no_lake(tmp_path, cdp):
    (tmp_path / "landing" / "web" / D).mkdir(parents=True)  # there, but no _SUCCESS
    proc = cdp(["run", "--date", D])
    assert proc.returncode == 1
    line = proc.stderr.strip()
    assert "3 landing folder(s) not ready" in line
    for source in ("pos", "web", "crm"):
        assert str(tmp_path / "landing" / source / D) in line
    assert "has no _SUCCESS" in line and "--allow-incomplete" in line
    assert not (tmp_path / "lake").exists()  # no meta/runs, nothing


def _ready_day(base: Path) -> None:
    for source in ("pos", "web", "crm"):
        day = base / "landing" / source / D
        day.mkdir(parents=True)
        (day / "_SUCCESS").write_text("")


def _conf_with(tmp_path: Path, name: str, change) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / name).read_text(encoding="utf-8"))
    change(data)
    (conf / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return conf


def test_check_conf_and_run_reject_a_stray_segments_key_before_writing(tmp_path):
    conf = _conf_with(tmp_path, "segments.yaml", lambda d: d.update(segmnts=[]))
    _ready_day(tmp_path)
    env = cdp_env(tmp_path, CDP_CONF_DIR=str(conf))
    check = run_cdp(["check-conf"], env)
    assert check.returncode == 1 and "segments.yaml" in check.stderr and "segmnts" in check.stderr
    run = run_cdp(["run", "--date", D], env)
    assert run.returncode == 1, run.stdout
    assert "segments.yaml" in run.stderr and "segmnts" in run.stderr
    assert "[ingest_pos" not in run.stdout
    assert not (tmp_path / "lake").exists()


def test_run_rejects_a_predicate_on_an_unknown_column_before_writing(tmp_path):
    def bad_rule(data: dict) -> None:
        data["rules"][1]["when"] = "days_since_last_visit > {max_recency_days}"

    conf = _conf_with(tmp_path, "lifecycle.yaml", bad_rule)
    _ready_day(tmp_path)
    run = run_cdp(["run", "--date", D], cdp_env(tmp_path, CDP_CONF_DIR=str(conf)))
    assert run.returncode == 1, run.stdout
    assert "lifecycle.yaml" in run.stderr and "churned" in run.stderr
    assert "days_since_last_visit" in run.stderr
    assert not (tmp_path / "lake").exists()


def test_demo_env_file_puts_the_venv_on_the_path(tmp_path):
    import subprocess
    import sys

    from jobs.demo import airflow_env, write_env_file

    env_file = write_env_file(tmp_path, airflow_env(tmp_path, tmp_path / "demo"))
    assert f"export PATH={Path(sys.executable).parent}:" in env_file.read_text()
    # The commands the demo and the README print, from a shell without the venv.
    shell = f"source {env_file} && command -v airflow && command -v cdp && cdp --version"
    proc = subprocess.run(
        ["bash", "-c", shell],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    airflow, cdp, version = proc.stdout.split("\n")[:3]
    assert Path(airflow).parent == Path(sys.executable).parent == Path(cdp).parent
    assert version.startswith("cdp ")


def test_a_failed_engine_call_names_the_engines_reason_on_one_line():
    """The 5M value step failed as 'step value failed: <_InactiveRpcError of RPC that
    terminated with:' and nothing else; the gRPC details carry the reason."""
    from jobs.pipeline import StepFailed

    rpc = RuntimeError(
        "<_InactiveRpcError of RPC that terminated with:\n"
        "\tstatus = StatusCode.RESOURCE_EXHAUSTED\n"
        '\tdetails = "CLIENT: Sent message larger than max (365621235 vs. \n134217728)"\n'
        '\tdebug_error_string = "RESOURCE_EXHAUSTED:CLIENT: Sent message larger"\n>'
    )
    reason = cli.one_line_reason(StepFailed("value", rpc))
    assert reason == (
        "step value failed: <_InactiveRpcError of RPC that terminated with "
        "CLIENT: Sent message larger than max (365621235 vs. 134217728)"
    )
    assert cli.one_line_reason(StepFailed("rfm", ValueError("bad\nmore"))) == (
        "step rfm failed: bad"
    )
    assert cli.one_line_reason(ValueError()) == "ValueError"
