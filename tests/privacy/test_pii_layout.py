"""PII layout: raw identifiers live only in bronze and restricted/, nowhere else.

The whole pipeline runs over a small generated landing zone (150 members x 5
days). The raw identifiers are then collected from bronze (phones as canonical
digits, e-mails lower-cased, ID card numbers, names) and every string value of
every other table (silver, gold, meta, ...) and every file under the exports
folder is searched for them as substrings. One test per table, so a failure
names the table and the column.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.config import SCHEMAS_DIR
from jobs.context import RunContext
from jobs.pipeline import STEPS, run_pipeline
from tests.lakes import settings_at

pytestmark = pytest.mark.slow

END = dt.date(2026, 11, 20)
PRIVATE_LAYERS = ("bronze", "quarantine", "restricted")


def declared_tables() -> list[str]:
    """Every table of schemas/*.yaml outside the layers allowed to hold raw PII."""
    out = []
    for f in sorted(SCHEMAS_DIR.glob("*.yaml")):
        if f.stem in PRIVATE_LAYERS or f.stem == "inputs":
            continue
        for name in yaml.safe_load(f.read_text(encoding="utf-8")) or {}:
            if not name.startswith("_"):
                out.append(f"{f.stem}/{name}")
    return out


def _steps() -> list:
    out = []
    for s in STEPS:
        if importlib.util.find_spec(s.target.partition(":")[0]) is None:
            break
        out.append(s)
    return out


@pytest.fixture(scope="module")
def pipeline(spark, tmp_path_factory):
    """The pipeline run end to end for END; (settings, lake, secrets by kind)."""
    from jobs.generate.landing import generate_landing
    from jobs.identity.normalize import clean_id_card, norm_email, norm_phone

    base = tmp_path_factory.mktemp("pii_layout")
    generate_landing(base / "landing", members=150, days=5, seed=23, end_date=END)
    s = settings_at(base)
    s = s.model_copy(update={"ingest": s.ingest.model_copy(update={"max_quarantine_rate": 1.0})})
    ctx = RunContext(settings=s, spark=spark, as_of=END)
    steps = _steps()
    run_pipeline(ctx, steps)
    lake = ctx.lake

    def distinct(df, col) -> set[str]:
        return {r[0] for r in df.select(col).where(F.col(col).isNotNull()).distinct().collect()}

    crm = lake.read("bronze/crm_members")
    pos = lake.read("bronze/pos_lines")
    secrets = {
        "phone": distinct(crm.select(norm_phone(F.col("phone")).alias("v")), "v")
        | distinct(pos.select(norm_phone(F.col("phone")).alias("v")), "v"),
        "email": distinct(crm.select(norm_email(F.col("email")).alias("v")), "v"),
        "id_card": distinct(crm.select(clean_id_card(F.col("id_card_no")).alias("v")), "v"),
        # Names of two characters or more: one character is what masking keeps.
        "name": {n for n in distinct(crm.select(F.trim("name").alias("v")), "v") if len(n) >= 2},
    }
    assert all(secrets.values()), {k: len(v) for k, v in secrets.items()}
    return s, lake, secrets, [st.name for st in steps]


def _strings(df) -> list[str]:
    """Every column of ``df`` that can hold text, as a string expression name."""
    out = []
    for f in df.schema.fields:
        if isinstance(f.dataType, T.StringType | T.ArrayType | T.MapType | T.StructType):
            out.append(f.name)
    return out


def find_leaks(texts: dict[str, list[str]], secrets: dict[str, set[str]]) -> list[str]:
    """(where, kind, example) for every secret found as a substring of a text."""
    leaks = []
    for where, values in texts.items():
        blob = "\x00".join(values).lower()
        for kind, vals in secrets.items():
            for v in vals:
                if v.lower() in blob:
                    example = next(x for x in values if v.lower() in x.lower())
                    leaks.append(f"{where}: {kind} in {example[:120]!r}")
                    break
    return leaks


@pytest.mark.parametrize("table", declared_tables())
def test_no_raw_pii_in_table(pipeline, table):
    _, lake, secrets, _ = pipeline
    if not lake.exists(table):
        pytest.skip(f"{table} is not written by the steps built so far")
    df = lake.read(table)
    texts = {}
    for c in _strings(df):
        col = F.col(c) if df.schema[c].dataType == T.StringType() else F.to_json(F.col(c))
        texts[f"{table}.{c}"] = [
            r[0] for r in df.select(col.alias("v")).where("v IS NOT NULL").distinct().collect()
        ]
    assert find_leaks(texts, secrets) == []


def test_no_undeclared_table_holds_raw_pii(pipeline):
    _, lake, secrets, _ = pipeline
    declared = set(declared_tables())
    extra = [
        t for t in lake.tables() if t.split("/")[0] not in PRIVATE_LAYERS and t not in declared
    ]
    texts = {}
    for t in extra:
        df = lake.read(t)
        for c in _strings(df):
            col = F.col(c) if df.schema[c].dataType == T.StringType() else F.to_json(F.col(c))
            texts[f"{t}.{c}"] = [
                r[0] for r in df.select(col.alias("v")).distinct().collect() if r[0]
            ]
    assert find_leaks(texts, secrets) == []


def test_no_raw_pii_in_exports(pipeline):
    settings, _, secrets, steps = pipeline
    if "exports" not in steps:
        pytest.skip("the exports step is not built yet")
    root = Path(settings.paths.exports)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".csv" for p in files) and any(p.suffix == ".parquet" for p in files)
    texts = {}
    for p in files:
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            text = json.dumps(pq.read_table(p).to_pylist(), ensure_ascii=False, default=str)
        else:
            text = p.read_bytes().decode("utf-8", errors="replace")
        texts[str(p.relative_to(root))] = [text]
    assert find_leaks(texts, secrets) == []


def test_masked_values_look_masked(pipeline):
    _, lake, _, _ = pipeline
    if not lake.exists("silver/members"):
        pytest.skip("silver/members not built yet")
    m = lake.read("silver/members")
    phones = [r[0] for r in m.select("phone_masked").where("phone_masked IS NOT NULL").collect()]
    emails = [r[0] for r in m.select("email_masked").where("email_masked IS NOT NULL").collect()]
    assert phones and all(len(p) == 11 and p[3:7] == "****" for p in phones)
    assert emails and all("***@" in e for e in emails)
