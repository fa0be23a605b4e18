"""The whole pipeline with its lake and exports in an object store (``s3://``), on Sail,
against a local S3 server: the same rows and member ids as a run on a local folder;
``cdp forget`` leaves no object holding the person; a second run is refused while the
lake's lease is held."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from jobs import storage
from jobs.config import PROJECT_ROOT
from jobs.lake import delta_arrow
from jobs.lock import lake_lock
from tests.objectstore.conftest import list_keys
from tests.reliability.cli import cdp_env, run_cdp

END = "2026-11-20"
# Columns that name the run or its clock, not the data.
RUN_COLUMNS = {"_run_id", "run_id", "_ingested_at", "ingested_at", "added_at", "validated_at"}


def _rows(root: str, name: str) -> list[str]:
    """A table's rows as sorted JSON lines, without the run's own columns. A map's entries
    have no order (two runs on one folder may write them in different orders): sorted."""
    table = delta_arrow(
        storage.join(root, name), storage_options=storage.delta_storage_options(root)
    )
    table = table.select([c for c in table.column_names if c not in RUN_COLUMNS])
    maps = [f.name for f in table.schema if pa.types.is_map(f.type)]
    rows = [{**r, **{c: sorted(r[c]) for c in maps if r[c] is not None}} for r in table.to_pylist()]
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _export_lines(root: str) -> dict[str, list[str]]:
    """Every CSV export file's lines, sorted (row order is not part of the contract here)."""
    fs, path = storage.filesystem(root)
    out = {}
    for name, _ in storage.list_dir(storage.join(root, END)):
        if name.endswith(".csv"):
            text = storage.read_text(storage.join(root, END, name)) or ""
            out[name] = sorted(text.splitlines())
    return out


def _objects_holding(bucket: str, needles: list[str]) -> list[str]:
    """Every object in ``bucket`` whose content holds a needle (Parquet by value)."""
    client, hits = boto3.client("s3"), []
    for key in list_keys(bucket):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            text = json.dumps(pq.read_table(io.BytesIO(body)).to_pylist(), default=str)
        else:
            text = body.decode("utf-8", errors="replace")
        hits += [f"{key}: {n}" for n in needles if n in text]
    return hits


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_pipeline_on_s3_equals_local_and_forget_erases_every_object(tmp_path, bucket, s3_env):
    import datetime as dt

    from jobs.generate.landing import generate_landing

    generate_landing(tmp_path / "landing", members=30, days=2, seed=11, stores=6,
                     end_date=dt.date.fromisoformat(END))  # fmt: skip
    landing = str(tmp_path / "landing")
    lake, exports = f"s3://{bucket}/lake", f"s3://{bucket}/exports"
    local_env = cdp_env(tmp_path / "local", CDP_LANDING=landing)
    s3_run_env = cdp_env(tmp_path / "s3", CDP_LANDING=landing, CDP_LAKE=lake,
                         CDP_EXPORTS=exports)  # fmt: skip
    # Both runs at once: each waits on its engine most of the time.
    runs = [_start(["run", "--date", END], env) for env in (local_env, s3_run_env)]
    for proc in runs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err

    local_lake = str(tmp_path / "local" / "lake")
    tables = storage.delta_tables(lake)
    assert tables == storage.delta_tables(local_lake)
    compared = [t for t in tables if t.startswith(("silver/", "gold/"))]
    assert {"silver/member_xref", "silver/members", "gold/member_features"} <= set(compared)
    for name in compared:
        assert _rows(lake, name) == _rows(local_lake, name), name
    local_exports = _export_lines(str(tmp_path / "local" / "exports"))
    assert local_exports and _export_lines(exports) == local_exports
    assert storage.exists(storage.join(exports, END, "_SUCCESS"))
    assert list_keys(bucket, "lake/_cdp/") == ["lake/_cdp/pii_key.json"]  # no lock, no staging

    # A second run while the lake's lease is held is refused, naming the holder.
    with lake_lock(lake, "run-holder"):
        refused = run_cdp(["run", "--date", END], s3_run_env)
    assert refused.returncode != 0 and "run run-holder" in refused.stderr, refused.stderr

    members = DeltaTable(
        f"{lake}/silver/members", storage_options=storage.delta_storage_options(lake)
    ).to_pyarrow_table()
    known = members.filter(pc.is_valid(members["crm_id"])).sort_by("member_id").slice(0, 1)
    member, crm_id = known["member_id"][0].as_py(), known["crm_id"][0].as_py()
    assert _objects_holding(bucket, [member, crm_id])  # before: in tables and exports
    # The recompute phase re-runs the steps the run above already ran on S3 (two thirds of
    # the erasure's time against the local S3 server); skipped, as for a batch of erasures.
    forget = run_cdp(["forget", "--member", member, "--no-recompute"], s3_run_env)
    assert forget.returncode == 0 and "erased 1 member(s)" in forget.stdout, forget.stderr
    assert "gold not recomputed" in forget.stdout
    # Old versions were vacuumed and the logs purged: no object anywhere holds them.
    assert _objects_holding(bucket, [member, crm_id]) == []
