"""Read-only analyst SQL: what `cdp sql` and `cdp serve` let through.

A statement is parsed (sqlglot, Spark dialect), never matched with regular
expressions, and checked against an allow-list: one statement, a query
(``SELECT``/``WITH``/set operations/``VALUES``), ``DESCRIBE``, ``SHOW`` or
``EXPLAIN`` of an allowed statement. Anything that writes, drops, caches or changes
the session (INSERT, UPDATE, DELETE, MERGE, DROP, CREATE, ALTER, TRUNCATE, OPTIMIZE,
VACUUM, COPY, CACHE, SET, USE, ...) is refused, wherever it hides. The engine then runs
the statement *as re-printed from the checked parse tree* (comments dropped), so a
parser difference between sqlglot and the engine cannot smuggle in a second statement.

Tables holding raw PII (layers ``bronze``, ``quarantine``, ``restricted``) are out of
reach by name *and by path*: ``delta.`<lake>/bronze/...```, ``parquet.`...```,
``file:`` URIs, relative paths, ``..`` and symlinks are resolved before the check; a
path outside the lake, a glob or a remote URI is refused; table functions other than
generators (``read_files``, ``IDENTIFIER``...) and JVM reflection are refused. A PII
role (conf/analyst.yaml ``pii_roles`` + env ``CDP_ANALYST_ROLE``) lifts the PII part only.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

PII_LAYERS = ("bronze", "quarantine", "restricted")
# `<format>.`<path>`` reads a path directly (Spark's "run SQL on files").
FILE_FORMATS = frozenset(
    "delta parquet csv json orc text avro binaryfile xml jdbc iceberg hudi file".split()
)
# Table-valued functions that only generate rows from their arguments.
SAFE_TABLE_FUNCTIONS = frozenset(
    "range explode explode_outer inline inline_outer posexplode posexplode_outer stack "
    "json_tuple".split()
)
# Functions that run JVM code or read files.
FORBIDDEN_FUNCTIONS = frozenset("reflect java_method try_reflect read_files".split())
# Statement kinds that write, drop or change the session or the catalog.
_WRITES = tuple(
    getattr(exp, name)
    for name in (
        "DML Insert Update Delete Merge DDL Create Drop Alter TruncateTable Command Cache "
        "Uncache Set Use Refresh Analyze Copy Pragma Transaction Commit Rollback LoadData "
        "Grant Revoke Comment Declare Kill"
    ).split()
    if hasattr(exp, name)
)
_READ_COMMANDS = ("SHOW", "EXPLAIN")
_EXPLAIN_MODES = re.compile(r"^\s*(EXTENDED|FORMATTED|CODEGEN|COST)\b", re.IGNORECASE)
_REMOTE_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

logging.getLogger("sqlglot").setLevel(logging.ERROR)  # no "falling back to Command" noise


class AccessDenied(ValueError):
    """A statement analyst access does not run, and why."""


@dataclass(frozen=True)
class Access:
    """What an analyst may read: the lake, and whether PII layers are in reach."""

    lake: Path
    pii: bool = False


def checked_sql(sql: str, access: Access) -> str:
    """The statement to run for ``sql``: checked, re-printed without comments.

    Raises AccessDenied naming what is refused.
    """
    statement = _one_statement(sql)
    if isinstance(statement, exp.Command):
        return _checked_command(statement, access)
    if not isinstance(statement, exp.Query | exp.Values | exp.Describe):
        raise AccessDenied(
            f"read-only access: {statement.key.upper()} statements are refused "
            "(allowed: SELECT, WITH, VALUES, SHOW, DESCRIBE, EXPLAIN)"
        )
    check_tree(statement, access)
    return statement.sql(dialect="spark", comments=False)


def check_expression(sql_expression: str, access: Access) -> None:
    """Check a SQL expression string (``F.expr``, ``selectExpr``, a filter) the same way."""
    try:
        tree = sqlglot.parse_one(sql_expression, read="spark", into=exp.Condition)
    except sqlglot.errors.ParseError:
        tree = sqlglot.parse_one(f"SELECT {sql_expression}", read="spark")
    check_tree(tree, access)


def check_table_name(name: str, access: Access) -> None:
    """Check a table identifier as written by a client (``gold.x``, ``delta.`/path```)."""
    check_tree(_one_statement(f"SELECT * FROM {name}"), access)


def check_tree(tree: exp.Expression, access: Access) -> None:
    """Refuse any write, forbidden function or out-of-reach table anywhere in ``tree``."""
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise AccessDenied(f"read-only access: {node.key.upper()} is refused")
        if isinstance(node, exp.Table):
            _check_table(node, access)
        elif isinstance(node, exp.Func) and _func_name(node) in FORBIDDEN_FUNCTIONS:
            raise AccessDenied(f"read-only access: function {_func_name(node)}() is refused")


def check_path(raw: str, access: Access) -> None:
    """Refuse a path outside the lake's analyst layers (symlinks and ``..`` resolved)."""
    if any(c in raw for c in "*?[]{}%"):
        raise AccessDenied(f"path {raw!r}: glob patterns and escapes are refused")
    text = raw.strip()
    if text.lower().startswith("file:"):
        text = "/" + text[5:].lstrip("/")
    elif _REMOTE_URI.match(text):
        raise AccessDenied(f"path {raw!r}: only paths inside the lake are readable")
    resolved = Path(os.path.realpath(os.path.join(os.getcwd(), text)))
    lake = Path(os.path.realpath(access.lake))
    if not resolved.is_relative_to(lake):
        raise AccessDenied(f"path {raw!r} is outside the lake {lake}")
    parts = resolved.relative_to(lake).parts
    if not parts or parts[0].startswith(("_", ".")):
        raise AccessDenied(f"path {raw!r}: not a table of the lake")
    if parts[0] in PII_LAYERS and not access.pii:
        raise AccessDenied(
            f"path {raw!r} is in the PII layer {parts[0]!r}: it needs a PII role "
            "(conf/analyst.yaml pii_roles and CDP_ANALYST_ROLE)"
        )


def _one_statement(sql: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read="spark") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AccessDenied(f"could not parse the statement: {first[:200]}") from None
    if len(statements) != 1:
        raise AccessDenied(f"one statement at a time, got {len(statements)}")
    return statements[0]


def _checked_command(command: exp.Command, access: Access) -> str:
    keyword = str(command.this).upper()
    rest = command.expression.name if command.expression else ""
    if keyword == "SHOW":
        return f"SHOW {rest}"
    if keyword == "EXPLAIN":
        mode = _EXPLAIN_MODES.match(rest)
        inner = rest[mode.end() :] if mode else rest
        prefix = f"EXPLAIN {mode.group(1).upper()} " if mode else "EXPLAIN "
        return prefix + checked_sql(inner, access)
    raise AccessDenied(
        f"read-only access: {keyword} statements are refused "
        f"(allowed: SELECT, WITH, VALUES, {', '.join(_READ_COMMANDS)}, DESCRIBE)"
    )


def _check_table(table: exp.Table, access: Access) -> None:
    if isinstance(table.this, exp.Func):
        name = _func_name(table.this)
        if name not in SAFE_TABLE_FUNCTIONS:
            raise AccessDenied(f"read-only access: table function {name}() is refused")
        return
    parts = [p.name for p in table.parts]
    qualifiers, name = [q.lower() for q in parts[:-1]], parts[-1]
    if (qualifiers and qualifiers[-1] in FILE_FORMATS) or "/" in name or ":" in name:
        check_path(name, access)
    elif not access.pii and any(q in PII_LAYERS for q in qualifiers):
        raise AccessDenied(
            f"table {'.'.join(parts)} is in a PII layer: it needs a PII role "
            "(conf/analyst.yaml pii_roles and CDP_ANALYST_ROLE)"
        )


def _func_name(func: exp.Func) -> str:
    return (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
