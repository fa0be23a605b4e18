"""The writer lock of a lake in an object store: a lease object written with S3
conditional requests (jobs.lock), against a local S3 server."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import boto3
import pytest

from jobs.config import PROJECT_ROOT
from jobs.lock import LakeBusy, LakeLockLost, S3Lease, lake_lock
from tests.objectstore.conftest import list_keys

HOLD = """
import sys, time
from jobs.lock import lake_lock
with lake_lock(sys.argv[1], "run-dead"):
    print("held", flush=True)
    time.sleep(600)
"""


def _lock_object(bucket: str) -> dict:
    body = boto3.client("s3").get_object(Bucket=bucket, Key="lake/_cdp/writer.lock")["Body"]
    return json.loads(body.read())


def test_second_run_is_refused_naming_the_holder(bucket):
    lake = f"s3://{bucket}/lake"
    with lake_lock(lake, "run-a"):
        with lake_lock(lake, "run-a"):  # re-entrant within the process
            pass
        assert _lock_object(bucket)["run_id"] == "run-a"
        with pytest.raises(LakeBusy) as err:
            S3Lease(f"{lake}/_cdp/writer.lock", lake, "run-b", 60).acquire()
        message = str(err.value)
        assert "run run-a" in message and f"pid {os.getpid()}" in message
        assert "expires in" in message
    assert list_keys(bucket, "lake/_cdp/") == []  # released: the object is gone
    with lake_lock(lake, "run-b"):
        assert _lock_object(bucket)["run_id"] == "run-b"


def test_a_dead_holders_lease_expires_and_is_taken_over(bucket, s3_env, caplog):
    lake = f"s3://{bucket}/lake"
    env = {**os.environ, "CDP_LOCK_LEASE_SECONDS": "3", "PYTHONPATH": str(PROJECT_ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, lake], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock: no release
        holder.wait()
        with pytest.raises(LakeBusy, match="run run-dead"):
            with lake_lock(lake, "run-next"):
                pass
        time.sleep(4.5)  # the lease (3 s, by the store's clock) runs out
        with caplog.at_level(logging.WARNING, logger="jobs.lock"):
            with lake_lock(lake, "run-next"):
                assert _lock_object(bucket)["run_id"] == "run-next"
        assert "stopped renewing" in caplog.text and "run-dead" in caplog.text
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_live_holder_renews_its_lease_while_a_long_step_runs(bucket, monkeypatch):
    lake = f"s3://{bucket}/lake"
    monkeypatch.setenv("CDP_LOCK_LEASE_SECONDS", "2")
    with lake_lock(lake, "run-long"):
        first = _lock_object(bucket)["renewed"]
        time.sleep(3.5)  # longer than the lease: renewed every 2/3 s meanwhile
        assert _lock_object(bucket)["renewed"] != first
        with pytest.raises(LakeBusy, match="run run-long"):
            S3Lease(f"{lake}/_cdp/writer.lock", lake, "run-other", 2).acquire()


def test_a_holder_whose_lease_was_taken_over_fails_and_deletes_nothing(bucket):
    lake = f"s3://{bucket}/lake"
    uri = f"{lake}/_cdp/writer.lock"
    stalled = S3Lease(uri, lake, "run-stalled", 1)
    stalled.acquire()
    stalled._stop.set()  # a frozen holder: no renewal
    time.sleep(2.5)
    taker = S3Lease(uri, lake, "run-taker", 60)
    taker.acquire()
    with pytest.raises(LakeLockLost, match="took it over"):
        stalled.release()
    assert _lock_object(bucket)["run_id"] == "run-taker"  # the new holder's lease stays
    taker.release()
    assert list_keys(bucket, "lake/_cdp/") == []
