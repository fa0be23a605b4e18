"""Crash safety: a run that dies half-way leaves readable tables, and a rerun of the
date ends exactly where a clean run does.

Two kinds of failure, over a small generated landing zone:

* an exception after the N-th lake write of the run (``Lake`` writes patched), for
  N at the start, the middle and the end of the run, in-process;
* a SIGKILL of ``cdp run`` right after one table's write committed
  (``CDP_FAULT_KILL_AT``, jobs/lake.py), in a subprocess: no ``finally`` runs, the
  lock is released by the kernel, staging files are left behind.

Then the same date is run again and every table is compared with a clean run's
(sorted rows; run ids, ingest times and other wall-clock columns left out).
The steps are the longest prefix of the pipeline whose modules exist, so the
test grows with the pipeline.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
from pathlib import Path

import pytest

from jobs.config import CONF_DIR, load_settings, with_paths
from jobs.context import RunContext
from jobs.lake import Lake
from jobs.pipeline import STEPS, run_pipeline
from tests.reliability.cli import TEST_KEY, cdp_env, run_cdp

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 20)
# Columns that differ between any two runs by design.
VOLATILE = {
    "_ingested_at",
    "_run_id",
    "ingested_at",
    "run_id",
    "validated_at",
    "started_at",
    "finished_at",
    "seconds",
    "detail",
    "generated_at",
}
# Per-run records: a failed run leaves its own rows there by design.
PER_RUN_TABLES = {"meta/runs", "meta/quality_results"}


def available_steps() -> list:
    """The longest prefix of STEPS whose modules can be imported (the pipeline as built so far)."""
    out = []
    for s in STEPS:
        if importlib.util.find_spec(s.target.partition(":")[0]) is None:
            break
        out.append(s)
    return out


def snapshot(spark, lake_root: Path) -> dict[str, list[tuple]]:
    """Every table's rows as sorted tuples of text, volatile columns left out."""
    lake = Lake(spark, lake_root)
    out = {}
    for name in lake.tables():
        if name in PER_RUN_TABLES:
            continue
        df = lake.read(name)
        cols = sorted(c for c in df.columns if c not in VOLATILE)
        out[name] = sorted(tuple(_text(v) for v in r) for r in df.select(*cols).collect())
    return out


def _text(v) -> str:
    """A value as text; maps and arrays (collect_set, map_from_entries) have no order."""
    if isinstance(v, dict):
        return str(sorted((str(k), _text(x)) for k, x in v.items()))
    if isinstance(v, list):
        return str(sorted(_text(x) for x in v))
    return str(v)


def diff(a: dict, b: dict) -> list[str]:
    problems = [f"{t}: only in one lake" for t in sorted(set(a) ^ set(b))]
    for t in sorted(set(a) & set(b)):
        if a[t] != b[t]:
            extra = set(a[t]) - set(b[t])
            missing = set(b[t]) - set(a[t])
            problems.append(
                f"{t}: {len(a[t])} vs {len(b[t])} rows; e.g. extra {sorted(extra)[:1]}, "
                f"missing {sorted(missing)[:1]}"
            )
    return problems


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    from jobs.generate.landing import generate_landing

    out = tmp_path_factory.mktemp("crash") / "landing"
    generate_landing(out, members=60, days=3, seed=5, end_date=END)
    return out


def _settings(base: Path, landing: Path):
    s = with_paths(
        load_settings(env={}),
        landing=landing,
        lake=base / "lake",
        exports=base / "exports",
        work=base / "work",
    )
    # The generator plants whole unreadable files: on a zone this small they cross the
    # quality gate, which is not what this test is about.
    ingest = s.ingest.model_copy(update={"max_quarantine_rate": 1.0})
    # One key for every lake of the module (the CLI runs get the same from cdp_env), so the
    # clean and the crashed lakes hash identifiers alike.
    key_file = base / "pii.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(TEST_KEY)
    privacy = s.privacy.model_copy(update={"key_file": key_file})
    return s.model_copy(update={"ingest": ingest, "privacy": privacy})


@pytest.fixture(scope="module")
def conf_dir(tmp_path_factory) -> Path:
    """conf/ with the quality gate open, for the CLI runs (see _settings)."""
    import yaml

    conf = tmp_path_factory.mktemp("conf") / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["max_quarantine_rate"] = 1.0
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return conf


@pytest.fixture(scope="module")
def clean(landing, spark, tmp_path_factory):
    """A clean in-process run: its snapshot and how many lake writes it made."""
    base = tmp_path_factory.mktemp("clean")
    calls = {"n": 0}
    originals = {
        m: getattr(Lake, m)
        for m in ("overwrite", "append", "replace_where", "merge", "apply_changes")
    }

    def counting(method):
        def wrapper(self, df, name, *a, **kw):
            calls["n"] += name not in PER_RUN_TABLES
            return originals[method](self, df, name, *a, **kw)

        return wrapper

    mp = pytest.MonkeyPatch()
    for m in originals:
        mp.setattr(Lake, m, counting(m))
    try:
        ctx = RunContext(settings=_settings(base, landing), spark=spark, as_of=END)
        run_pipeline(ctx, available_steps())
    finally:
        mp.undo()
    return snapshot(spark, base / "lake"), calls["n"]


class InjectedFault(RuntimeError):
    pass


@pytest.mark.parametrize("where", ["middle", "last"])
def test_exception_after_nth_write_then_rerun_equals_clean(
    where, landing, spark, clean, tmp_path, monkeypatch
):
    expected, writes = clean
    n = {"middle": max(writes // 2, 1), "last": max(writes - 1, 1)}[where]
    calls = {"n": 0}
    originals = {
        m: getattr(Lake, m)
        for m in ("overwrite", "append", "replace_where", "merge", "apply_changes")
    }

    def failing(method):
        def wrapper(self, df, name, *a, **kw):
            result = originals[method](self, df, name, *a, **kw)
            if name in PER_RUN_TABLES:
                return result
            calls["n"] += 1
            if calls["n"] == n:
                raise InjectedFault(f"injected after write {n} ({name})")
            return result

        return wrapper

    for m in originals:
        monkeypatch.setattr(Lake, m, failing(m))
    settings = _settings(tmp_path, landing)
    with pytest.raises(Exception, match="injected"):
        run_pipeline(RunContext(settings=settings, spark=spark, as_of=END), available_steps())
    # Every table is readable after the failure.
    for name in Lake(spark, tmp_path / "lake").tables():
        Lake(spark, tmp_path / "lake").read(name).count()
    monkeypatch.undo()
    run_pipeline(RunContext(settings=settings, spark=spark, as_of=END), available_steps())
    assert diff(snapshot(spark, tmp_path / "lake"), expected) == []


def _kill_targets() -> list[str]:
    targets = ["bronze/pos_lines", "meta/ingest_manifest"]
    names = {s.name for s in available_steps()}
    if "identity" in names:
        targets.append("silver/member_xref")
    if "kpis" in names:
        targets.append("gold/member_rfm")
    return targets


@pytest.mark.parametrize("table", _kill_targets())
def test_sigkill_after_a_table_write_then_rerun_equals_clean(
    table, landing, spark, clean, conf_dir, tmp_path
):
    # The clean run is the in-process one: `cdp run` with conf_dir and the test key
    # writes the same lake (one run fewer for the module).
    expected, _ = clean
    steps = ",".join(s.name for s in available_steps())
    args = ["run", "--date", END.isoformat(), "--steps", steps, "--landing", str(landing)]
    killed = run_cdp(args, cdp_env(tmp_path, CDP_FAULT_KILL_AT=table, CDP_CONF_DIR=str(conf_dir)))
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    # The killed writer left its staging files; the lock went with the process.
    rerun = run_cdp(args, cdp_env(tmp_path, CDP_CONF_DIR=str(conf_dir)))
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert diff(snapshot(spark, tmp_path / "lake"), expected) == []
    shutil.rmtree(tmp_path / "lake", ignore_errors=True)
