"""The embedded engine's memory settings reach Sail as its SAIL_* variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.config import EngineConf
from jobs.engine import sail_environment


def test_memory_limit_becomes_a_fair_pool(tmp_path):
    env = sail_environment(EngineConf(memory_limit_mb=512, spill_dir=tmp_path / "spill"))
    assert env["SAIL_RUNTIME__MEMORY_POOL__TYPE"] == "fair"
    assert env["SAIL_RUNTIME__MEMORY_POOL__FAIR__MAX_SIZE"] == str(512 * 1024 * 1024)
    assert env["SAIL_OPTIMIZER__PREFER_HASH_JOIN"] == "false"  # joins that can spill
    assert env["SAIL_RUNTIME__TEMPORARY_FILES__PATHS"] == f'["{tmp_path / "spill"}"]'


def test_zero_means_unbounded():
    assert sail_environment(EngineConf(memory_limit_mb=0)) == {}


def test_negative_limit_is_a_config_error():
    with pytest.raises(ValidationError, match="memory_limit_mb"):
        EngineConf(memory_limit_mb=-1)
