"""The source systems of the landing zone, one module each, and their registry.

A :class:`Source` says everything the pipeline needs to know about one system:
its input format and columns (``schemas/inputs.yaml``), how its checked text rows
are typed for bronze, how a batch is de-duplicated, which of its columns identify
a person (for identity resolution, suppression and erasure), its Great
Expectations suite (``expectations/<name>.json``), its sample-data generator and
its label in the report. Ingest, quality, privacy, the DAG, the report and the CLI
iterate over :data:`SOURCES`; adding a system is its module here, its schema, its
suite and its generator.

Kept free of pyspark (the Airflow DAG file imports it): functions are named as
``"module:function"`` and imported when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

DedupPolicy = Literal["keep_all", "first_copy", "first_copy_conflicts"]


@dataclass(frozen=True)
class Dedup:
    """How repeats of a row within and across batches are handled.

    ``keep_all``: every row version is kept (CRM: the latest ``updated_ts`` wins later).
    ``first_copy``: at-least-once delivery; the first copy of a ``key`` stays in bronze,
    later copies go to ``duplicates_table`` (web events).
    ``first_copy_conflicts``: as ``first_copy`` for identical copies (``duplicate_reason``);
    a copy with other content (over ``content_columns``) is quarantined as
    ``conflict_reason`` (POS lines, ledger transactions).
    ``lookup_key``: a ``long`` column of bronze holding xxhash64 of the (one-column)
    ``key``: a batch's earlier deliveries are looked up in it, one narrow column, rather
    than in the key's text (jobs.ingest.job.earlier_deliveries).
    """

    policy: DedupPolicy = "keep_all"
    key: tuple[str, ...] = ()
    duplicates_table: str | None = None
    content_columns: tuple[str, ...] = ()
    duplicate_reason: str = "duplicate"
    conflict_reason: str = "conflict"
    lookup_key: str | None = None


@dataclass(frozen=True, eq=False)
class Source:
    """One landing-zone source system (CONTRACT section 1).

    ``identity_columns``: xref source kind (``silver/member_xref.source``) -> column.
    ``identity_role``: ``links`` when its identities are nodes of the identity graph,
    ``resolves`` when its rows are only looked up in silver/member_xref.
    ``pii_columns``: suppression-list identifier type -> column; the columns that decide
    whether a row belongs to an erased person (suppression at ingest, erasure of bronze).
    ``optional``: a landing zone without any ``<landing>/<name>/`` folder is a chain
    without that system: nothing is waited for or refused.
    """

    name: str
    label: str
    bronze_table: str
    typer: str  # "module:function": checked text rows -> typed bronze rows
    generator: str  # "module:function" writing its files of a generated landing zone
    dedup: Dedup = Dedup()
    identity_columns: dict[str, str] = field(default_factory=dict)
    identity_role: Literal["links", "resolves"] = "links"
    pii_columns: dict[str, str] = field(default_factory=dict)
    optional: bool = False

    @property
    def ingest_step(self) -> str:
        return f"ingest_{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine/{self.name}"

    @property
    def suite(self) -> str:
        """The Great Expectations suite, relative to the project root."""
        return f"expectations/{self.name}.json"

    def type_rows(self) -> Callable[..., Any]:
        return load(self.typer)

    def generate_day(self) -> Callable[..., Any]:
        return load(self.generator)


def load(target: str) -> Callable[..., Any]:
    """The function named ``"module:function"``."""
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _registry() -> dict[str, Source]:
    from jobs.sources import crm, loyalty, pos, web

    return {s.name: s for s in (pos.SOURCE, web.SOURCE, crm.SOURCE, loyalty.SOURCE)}


SOURCES: dict[str, Source] = _registry()
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)


def get(name: str) -> Source:
    """The source called ``name``; a clear error naming the known ones otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r}; sources are: {', '.join(SOURCES)}") from None
