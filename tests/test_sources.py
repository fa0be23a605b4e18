"""The source registry (jobs.sources): every source is complete, and everything iterates over it.

No Spark: a new source that lacks its schema, suite, typing or generator fails here
first, with its name.
"""

from __future__ import annotations

import pytest

from jobs.config import PROJECT_ROOT, IngestConf
from jobs.ingest.parse import input_spec
from jobs.ingest.rules import load_rules
from jobs.orchestration.graph import SOURCE_OF_STEP
from jobs.pipeline import STEP_BY_NAME
from jobs.privacy.suppression import ID_TYPES, SOURCE_COLUMNS
from jobs.schemas import table_schema
from jobs.sources import SOURCE_NAMES, SOURCES, get


@pytest.mark.parametrize("name", SOURCE_NAMES)
def test_a_source_has_its_schema_suite_typing_and_generator(name):
    src = SOURCES[name]
    spec = input_spec(name)
    columns = set(table_schema(src.bronze_table).columns)
    assert set(src.dedup.key) <= columns and set(src.dedup.key) <= set(spec.columns)
    assert set(src.pii_columns.values()) <= columns & set(spec.columns)
    assert set(src.identity_columns.values()) <= columns
    assert set(src.pii_columns) <= set(ID_TYPES)
    assert set(src.dedup.content_columns) <= columns
    if src.dedup.duplicates_table:
        dups = table_schema(src.dedup.duplicates_table).columns
        assert {*src.dedup.key, "first_source_file", "_source_file", "_line_no"} <= set(dups)
    assert (PROJECT_ROOT / src.suite).is_file() and load_rules(name)
    assert callable(src.type_rows()) and callable(src.generate_day())
    assert table_schema(src.quarantine_table).columns[:4] == [
        "_source_file", "_line_no", "_raw", "_reasons",
    ]  # fmt: skip


def test_steps_sensors_config_and_suppression_follow_the_registry():
    for name in SOURCE_NAMES:
        step = STEP_BY_NAME[f"ingest_{name}"]
        assert callable(step.load())
        assert SOURCE_OF_STEP[step.name] == name
        assert "ingest_" + name in STEP_BY_NAME["quality"].after
        assert SOURCE_COLUMNS[name] == SOURCES[name].pii_columns
    assert IngestConf().sources == list(SOURCE_NAMES)
    with pytest.raises(ValueError, match="unknown source.*'sap'"):
        IngestConf(sources=["pos", "sap"])
    with pytest.raises(ValueError, match="sources are: pos, web, crm, loyalty"):
        get("sap")
