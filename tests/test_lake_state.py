"""A lake carries its own state (CONTRACT section 2): the PII key's identity, the lock and the
staging are found from the lake, whatever directory a run starts in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from jobs.config import PROJECT_ROOT, PrivacyConf
from jobs.lake_state import PiiKeyMismatch, key_fingerprint, recorded_key
from jobs.privacy.pii import PiiKeyError, load_key

DEMO = PrivacyConf(key_file=None, create_key_if_missing=True)
D = "2026-03-03"


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    for name in ("CDP_PII_KEY", "CDP_PII_KEY_FILE", "AIRFLOW_CONN_CDP_PII_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_new_lake_key_is_found_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a")
    first = load_key(DEMO, tmp_path / "lake")
    assert (tmp_path / "lake" / "_cdp" / "pii.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.chdir(tmp_path / "b" / "deeper")
    again = load_key(DEMO, Path("../../lake"))
    assert again.key == first.key
    assert recorded_key(tmp_path / "lake").fingerprint == key_fingerprint(first.key)
    assert not list((tmp_path / "a").iterdir()) and not list((tmp_path / "b" / "deeper").iterdir())


def test_another_key_is_refused_naming_both_fingerprints(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setenv("CDP_PII_KEY", "11" * 32)
    load_key(DEMO, lake)
    monkeypatch.setenv("CDP_PII_KEY", "22" * 32)
    with pytest.raises(PiiKeyMismatch) as err:
        load_key(DEMO, lake)
    message = str(err.value)
    assert key_fingerprint(bytes.fromhex("11" * 32)) in message
    assert key_fingerprint(bytes.fromhex("22" * 32)) in message
    assert "CDP_PII_KEY" in message


def test_existing_lake_is_never_given_a_generated_key(tmp_path):
    lake = tmp_path / "lake"
    write_deltalake(str(lake / "silver" / "members"), pa.table({"member_id": ["M1"]}))
    with pytest.raises(PiiKeyError, match="no PII key"):
        load_key(DEMO, lake)
    assert not (lake / "_cdp" / "pii.key").exists()
    assert recorded_key(lake) is None


def test_recorded_lake_without_its_key_names_the_fingerprint(tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setenv("CDP_PII_KEY", "33" * 32)
    load_key(DEMO, lake)
    monkeypatch.delenv("CDP_PII_KEY")
    with pytest.raises(PiiKeyError, match=key_fingerprint(bytes.fromhex("33" * 32))):
        load_key(DEMO, lake)


@pytest.mark.parametrize(
    "value",
    [json.dumps({"conn_type": "generic", "password": "44" * 32}), f"generic://:{'44' * 32}@"],
)
def test_key_from_an_airflow_connection(tmp_path, monkeypatch, value):
    monkeypatch.setenv("AIRFLOW_CONN_CDP_PII_KEY", value)
    got = load_key(PrivacyConf(create_key_if_missing=False), tmp_path / "lake")
    assert got.key == bytes.fromhex("44" * 32)
    assert got.source == "Airflow connection cdp_pii_key"


def test_key_file_from_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "secret.key"
    secret.write_text("55" * 32 + "\n")
    monkeypatch.setenv("CDP_PII_KEY_FILE", str(secret))
    got = load_key(PrivacyConf(create_key_if_missing=False), tmp_path / "lake")
    assert got.key == bytes.fromhex("55" * 32)


# --- end to end: the same command from two directories, then with another key --------------


def _cdp(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _xref(lake: Path) -> list[tuple]:
    table = DeltaTable(str(lake / "silver" / "member_xref")).to_pyarrow_table()
    rows = table.select(["source", "source_key", "member_id"]).to_pylist()
    return sorted(tuple(r.values()) for r in rows)


@pytest.mark.slow
def test_rerun_from_another_directory_keeps_key_and_ids(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CDP_", "AIRFLOW_CONN_"))}
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    gen = _cdp(["generate", "--out", str(landing), "--members", "60", "--days", "3",
                "--seed", "5", "--end-date", D], PROJECT_ROOT, base)  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    run = ["run", "--date", D, "--until", "identity", "--landing", str(landing)]
    for folder in ("worker-1", "worker-2"):
        (tmp_path / folder).mkdir()
    # Worker 1 names the lake relative to its directory; worker 2 absolutely.
    # Each worker has its own scratch folder (Data Docs); the lake's state is in the lake.
    first = _cdp([*run, "--lake", "../lake"], tmp_path / "worker-1",
                 {**base, "CDP_WORK": "work"})  # fmt: skip
    assert first.returncode == 0, first.stderr
    ids = _xref(lake)
    second = _cdp([*run, "--lake", str(lake)], tmp_path / "worker-2",
                  {**base, "CDP_WORK": "work"})  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert _xref(lake) == ids and ids
    names = {p.name for p in (lake / "_cdp").iterdir()}
    assert {"pii.key", "pii_key.json", "writer.lock"} <= names
    for folder in ("worker-1", "worker-2"):  # nothing but the scratch folder it was given
        assert {p.name for p in (tmp_path / folder).iterdir()} <= {"work"}

    runs_version = DeltaTable(str(lake / "meta" / "runs")).version()
    other = _cdp([*run, "--lake", str(lake)], tmp_path / "worker-2",
                 {**base, "CDP_WORK": "work", "CDP_PII_KEY": "66" * 32})  # fmt: skip
    assert other.returncode != 0
    lines = [ln for ln in other.stderr.splitlines() if ln.startswith("cdp")]
    assert len(lines) == 1 and "Traceback" not in other.stderr, other.stderr
    recorded = recorded_key(lake).fingerprint
    assert recorded in lines[0] and key_fingerprint(bytes.fromhex("66" * 32)) in lines[0]
    assert DeltaTable(str(lake / "meta" / "runs")).version() == runs_version
    assert _xref(lake) == ids
