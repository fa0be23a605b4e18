"""Row rules from the Great Expectations suites in `expectations/`.

The suites are the one place a rule is written. This module turns each
expectation into a Spark SQL predicate that is true when a row *violates* it, so
the same suite drives the row-level split into bronze and quarantine (here) and
the batch validation with Data Docs (jobs.quality). Each expectation names its
quarantine reason in ``meta.rule``; several expectations may share one reason.
Expectations marked ``meta.structural`` (a line that is not JSON, a row with the
wrong number of fields) make every other rule moot for that row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.config import EXPECTATIONS_DIR


@dataclass(frozen=True)
class Rule:
    name: str
    type: str
    kwargs: dict
    structural: bool
    description: str

    @property
    def violation_sql(self) -> str:
        """SQL boolean: true when a row breaks this expectation (never null)."""
        return f"coalesce(({_violation(self.type, self.kwargs)}), false)"


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _col(name: str) -> str:
    return f"`{name}`"


_WHERE = re.compile(
    r"^\s*SELECT\s+\*\s+FROM\s+\{batch\}\s+WHERE\s+(.+)$", re.IGNORECASE | re.DOTALL
)


def _violation(type_: str, kw: dict) -> str:
    if type_ == "expect_column_values_to_not_be_null":
        return f"{_col(kw['column'])} IS NULL"
    if type_ == "expect_column_values_to_be_null":
        return f"{_col(kw['column'])} IS NOT NULL"
    if type_ == "expect_column_values_to_be_in_set":
        values = ", ".join(_quote(v) for v in kw["value_set"])
        c = _col(kw["column"])
        return f"{c} IS NOT NULL AND {c} NOT IN ({values})"
    if type_ == "expect_column_values_to_match_regex":
        c = _col(kw["column"])
        return f"{c} IS NOT NULL AND NOT ({c} RLIKE {_quote(kw['regex'])})"
    if type_ == "unexpected_rows_expectation":
        m = _WHERE.match(kw["unexpected_rows_query"])
        if not m:
            raise ValueError(
                "unexpected_rows_query must read 'SELECT * FROM {batch} WHERE <condition>': "
                + kw["unexpected_rows_query"]
            )
        return m.group(1)
    raise ValueError(f"expectation type {type_!r} has no row-level translation")


@cache
def load_rules(source: str) -> tuple[Rule, ...]:
    """The rules of ``expectations/<source>.json``, in file order."""
    path = EXPECTATIONS_DIR / f"{source}.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    rules = []
    for i, exp in enumerate(suite["expectations"]):
        meta = exp.get("meta") or {}
        if "rule" not in meta:
            raise ValueError(f"{path}: expectation #{i} ({exp['type']}) has no meta.rule")
        rule = Rule(
            name=meta["rule"],
            type=exp["type"],
            kwargs=exp["kwargs"],
            structural=bool(meta.get("structural")),
            description=exp.get("description", ""),
        )
        _violation(rule.type, rule.kwargs)  # fail at load time on an untranslatable rule
        rules.append(rule)
    return tuple(rules)


def rule_names(source: str) -> list[str]:
    return sorted({r.name for r in load_rules(source)})


def reasons_column(source: str) -> Column:
    """``array<string>`` of every rule a row breaks (empty when it is good).

    A structural problem (not JSON, wrong field count, missing column) is
    reported alone: the other fields of such a row mean nothing.
    """
    rules = load_rules(source)

    def arr(rs: list[Rule]) -> Column:
        if not rs:
            return F.array().cast("array<string>")
        return F.array_distinct(
            F.array_compact(F.array(*[F.when(F.expr(r.violation_sql), F.lit(r.name)) for r in rs]))
        )

    structural = arr([r for r in rules if r.structural])
    regular = arr([r for r in rules if not r.structural])
    return F.when(F.size(structural) > 0, structural).otherwise(regular)


def split(df: DataFrame, source: str) -> DataFrame:
    """Add ``_reasons`` to a staged batch (grain: one parsed row; keys _source_file, _line_no)."""
    return df.withColumn("_reasons", reasons_column(source))
