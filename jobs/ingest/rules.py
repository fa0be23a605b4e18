"""Row rules from the Great Expectations suites in `expectations/`.

The suites are the one place a rule is written. This module turns each
expectation into a Spark SQL predicate that is true when a row *violates* it, so
the same suite drives the row-level split into bronze and quarantine (here) and
the batch validation with Data Docs (jobs.quality). Each expectation names its
quarantine reason in ``meta.rule``; several expectations may share one reason.
Expectations marked ``meta.structural`` (a line that is not JSON, a row with the
wrong number of fields) make every other rule moot for that row.

An expectation with ``meta.field`` checks an *optional* field (CONTRACT 1): a
row breaking only such rules is kept, the field is nulled on its way to bronze
and ``_field_issues`` records the field, its text and the rule. Every other
rule (a broken required field, an unparsable row) sends the row to quarantine;
its reasons then also name the optional fields it broke.
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
    field: str | None = None  # optional field nulled (row kept) when the rule is broken

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
            field=meta.get("field"),
        )
        _violation(rule.type, rule.kwargs)  # fail at load time on an untranslatable rule
        rules.append(rule)
    return tuple(rules)


def rule_names(source: str) -> list[str]:
    return sorted({r.name for r in load_rules(source)})


def _names(rules: list[Rule]) -> Column:
    """``array<string>``: the distinct names of the ``rules`` a row breaks."""
    if not rules:
        return F.array().cast("array<string>")
    return F.array_distinct(
        F.array_compact(F.array(*[F.when(F.expr(r.violation_sql), F.lit(r.name)) for r in rules]))
    )


def field_rules(source: str) -> dict[str, list[Rule]]:
    """The rules on optional fields of ``source``, by field, in file order."""
    out: dict[str, list[Rule]] = {}
    for r in load_rules(source):
        if r.field:
            out.setdefault(r.field, []).append(r)
    return out


def reasons_column(source: str) -> Column:
    """``array<string>`` of every rule that sends a row to quarantine (empty when it is kept).

    A structural problem (not JSON, wrong field count, missing column) is
    reported alone: the other fields of such a row mean nothing. A row with
    other broken rules also lists the optional-field rules it breaks.
    """
    rules = load_rules(source)
    structural = _names([r for r in rules if r.structural])
    row = _names([r for r in rules if not r.structural and not r.field])
    fields = _names([r for r in rules if r.field])
    reasons = (
        F.when(F.size(structural) > 0, structural)
        .when(F.size(row) > 0, F.array_distinct(F.concat(row, fields)))
        .otherwise(_no_reasons())
    )
    return F.when(_any_broken([r for r in rules if not r.field]), reasons).otherwise(_no_reasons())


def _no_reasons() -> Column:
    return F.array().cast("array<string>")


def _any_broken(rules: list[Rule]) -> Column:
    """True when a row breaks any of ``rules``. Guards the per-row arrays: a CASE builds
    them only for the rows it selects, and almost every row breaks nothing."""
    return F.expr(" OR ".join(r.violation_sql for r in rules)) if rules else F.lit(False)


FIELD_ISSUE_TYPE = "array<struct<field:string,rule:string,value:string>>"


def field_issue_checks(source: str) -> list[tuple[str, str, str]]:
    """(field, rule name, SQL true when the row breaks it): one per entry ``_field_issues``
    can hold, in file order."""
    checks = []
    for column, rules in field_rules(source).items():
        for name in dict.fromkeys(r.name for r in rules):
            broken = " OR ".join(r.violation_sql for r in rules if r.name == name)
            checks.append((column, name, broken))
    return checks


def field_issues_column(source: str) -> Column:
    """``array<struct<field, rule, value>>``: each broken optional-field rule and the text it saw.

    One entry per (field, rule) broken, empty when none. ``value`` is the field's
    text as received (trimmed); bronze holds the field nulled.
    """
    entries = []
    for column, name, broken in field_issue_checks(source):
        issue = F.struct(
            F.lit(column).alias("field"),
            F.lit(name).alias("rule"),
            F.col(column).cast("string").alias("value"),
        )
        entries.append(F.when(F.expr(broken), issue))
    empty = F.array().cast(FIELD_ISSUE_TYPE)
    if not entries:
        return empty
    broken = _any_broken([r for r in load_rules(source) if r.field])
    return F.when(broken, F.array_compact(F.array(*entries)).cast(FIELD_ISSUE_TYPE)).otherwise(
        empty
    )


def null_invalid_fields(df: DataFrame, source: str) -> DataFrame:
    """``df`` (checked text rows) with every optional field that breaks a rule set to null."""
    changes = {}
    for column, rules in field_rules(source).items():
        broken = " OR ".join(r.violation_sql for r in rules)
        changes[column] = F.when(~F.expr(broken), F.col(column))
    return df.withColumns(changes) if changes else df


def split(df: DataFrame, source: str) -> DataFrame:
    """Add ``_reasons`` and ``_field_issues`` to a staged batch.

    Grain: one parsed row (keys _source_file, _line_no). A row with empty
    ``_reasons`` is kept; its ``_field_issues`` name the optional fields to null.
    """
    return df.withColumns(
        {"_reasons": reasons_column(source), "_field_issues": field_issues_column(source)}
    )
