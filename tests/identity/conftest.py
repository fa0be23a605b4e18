"""Hand-written bronze rows written as real Delta tables, and helpers to read results."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from jobs.schemas import table_schema

D1 = dt.date(2026, 11, 1)


def day(n: int) -> dt.date:
    """Business date n days after D1 (day(0) == D1)."""
    return D1 + dt.timedelta(days=n)


def crm_row(crm_id: str, d: int = 0, **kw) -> dict:
    bd = day(d)
    row = {
        "crm_id": crm_id,
        "register_ts": dt.datetime(2025, 1, 1, 9, 0),
        "register_channel": "store",
        "status": "active",
        "updated_ts": dt.datetime(bd.year, bd.month, bd.day, 12, 0),
        "_business_date": bd,
        "_source_file": f"crm/{bd}/members_{bd:%Y%m%d}.csv",
        "_line_no": 2,
        "_ingested_at": dt.datetime(bd.year, bd.month, bd.day, 23, 0),
    }
    row.update(kw)
    return row


def pos_row(order_id: str, d: int = 0, line_no: int = 1, **kw) -> dict:
    bd = day(d)
    row = {
        "order_id": order_id,
        "line_no": line_no,
        "store_id": "S01",
        "order_ts": dt.datetime(bd.year, bd.month, bd.day, 10, 0),
        "order_date": bd,
        "txn_type": "SALE",
        "sku": "SKU1",
        "category": "生鲜",
        "qty": 1,
        "unit_price": Decimal("10.00"),
        "discount": Decimal("0.00"),
        "amount": Decimal("10.00"),
        "payment_method": "cash",
        "_business_date": bd,
        "_source_file": f"pos/{bd}/pos_S01_{bd:%Y%m%d}.csv",
        "_line_no": line_no + 1,
        "_ingested_at": dt.datetime(bd.year, bd.month, bd.day, 23, 0),
    }
    row.update(kw)
    return row


def web_row(event_id: str, anon: str, d: int = 0, **kw) -> dict:
    bd = day(d)
    row = {
        "event_id": event_id,
        "event_ts": dt.datetime(bd.year, bd.month, bd.day, 20, 0),
        "event_date": bd,
        "anonymous_id": anon,
        "event_type": "page_view",
        "channel": "app",
        "_business_date": bd,
        "_source_file": f"web/{bd}/events_{bd:%Y%m%d}_1.jsonl",
        "_line_no": 1,
        "_ingested_at": dt.datetime(bd.year, bd.month, bd.day, 23, 0),
    }
    row.update(kw)
    return row


def write_bronze_tables(ctx, crm: list[dict] = (), pos: list[dict] = (), web: list[dict] = ()):
    """Write (replace) the three bronze tables of a context's lake from row dicts."""
    # A lake's PII key is generated only while the lake is new (no table yet).
    assert ctx.pii_key
    for name, rows in (
        ("bronze/crm_members", crm),
        ("bronze/pos_lines", pos),
        ("bronze/web_events", web),
    ):
        schema = table_schema(name)
        full = [tuple(r.get(c) for c in schema.columns) for r in rows]
        ctx.lake.overwrite(ctx.spark.createDataFrame(full, schema.struct), name)


@pytest.fixture()
def write_bronze(spark):
    """:func:`write_bronze_tables` (on the shared session)."""
    return write_bronze_tables


def xref_map(ctx) -> dict[tuple[str, str], str | None]:
    rows = ctx.lake.read("silver/member_xref").collect()
    return {(r["source"], r["source_key"]): r["member_id"] for r in rows}


def rows(ctx, name: str) -> list[dict]:
    return [r.asDict() for r in ctx.lake.read(name).collect()]


def fresh_lake_ctx(spark, root, as_of: dt.date):
    """A run context on a new lake under ``root`` (lake, work, a PII key file of its own),
    for a module that resolves its records once."""
    import secrets

    from jobs.config import load_settings, with_paths
    from jobs.context import RunContext

    s = with_paths(load_settings(env={}), lake=root / "lake", work=root / "work")
    (root / "pii.key").write_text(secrets.token_hex(32))
    s = s.model_copy(
        update={"privacy": s.privacy.model_copy(update={"key_file": root / "pii.key"})}
    )
    return RunContext(settings=s, spark=spark, as_of=as_of)


def crm_members_and_rules(ctx) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """(member of each crm_id, rule of each crm-crm edge) of a resolved lake."""
    member = {k: v for (source, k), v in xref_map(ctx).items() if source == "crm"}
    rules = {(e["src_key"], e["dst_key"]): e["rule"] for e in rows(ctx, "silver/identity_edges")
             if e["src_source"] == "crm" and e["dst_source"] == "crm"}  # fmt: skip
    return member, rules


def fuzzy_profiles_and_pairs(spark):
    """Fuzzy profiles (jobs.identity.fuzzy.fuzzy_profiles' columns) of six records that
    agree and disagree in several ways, and every pair of them."""
    import datetime as dt

    schema = (
        "crm_id string, name string, name_sorted string, birth_date date, gender string, "
        "id_card string, seen date, first string, last string, n_tokens int, "
        "city_key string, province_key string, card string, id_raw string, phone string, "
        "id_valid boolean"
    )
    dob, seen = dt.date(1980, 3, 4), dt.date(2026, 11, 1)
    people = [
        ("F1", "maria carbone", dob, "sydney", "4562990", "13700000001"),
        ("F2", "maria carbne", dob, "sydney", "4562890", None),
        ("F3", "maria carbone", dt.date(1980, 4, 3), "perth", None, "13700000002"),
        ("G1", "ashleigh quilliam", dob, "melbourne", None, None),
        ("G2", "quilliam ashleigh", None, "melbourne", "88001234", None),
        ("H1", "张三丰", dob, "上海", None, "13700000001"),
    ]
    fp = spark.createDataFrame(
        [(c, n, " ".join(sorted(n.split())), b, None, None, seen, n.split()[0], n.split()[-1],
          len(n.split()), city, None, card, None, phone, None)
         for c, n, b, city, card, phone in people],
        schema,
    )  # fmt: skip
    ids = [p[0] for p in people]
    pairs = spark.createDataFrame(
        [(x, y, x == "F1" and y == "H1") for x in ids for y in ids if x < y],
        "x string, y string, shares_junk boolean",
    )
    return fp, pairs


def check_compare_in_slices(spark, base) -> None:
    """:func:`jobs.identity.fuzzy.compare_in_slices` of :func:`fuzzy_profiles_and_pairs`
    less two pairs already sharing a value, in slices of at most 4 pairs (written to one
    folder under ``base``), gives the rows of one query over the other 13; limit 0
    compares them in one query. On any engine (the JVM's too:
    tests/jvm/transforms_on_jvm.py)."""
    from pathlib import Path

    from jobs.identity.conf import load_identity_conf
    from jobs.identity.fuzzy import compare, compare_in_slices
    from jobs.lake import ParquetScratch

    class Counting(ParquetScratch):
        def slices(self, parts, name):
            self.written = 0

            def counted():
                for part in parts:
                    self.written += 1
                    yield part

            return super().slices(counted(), name)

    fp, pairs = fuzzy_profiles_and_pairs(spark)
    shared = spark.createDataFrame([("F1", "F2"), ("G1", "G2")], "x string, y string")
    conf = load_identity_conf()
    kept = pairs.join(shared, ["x", "y"], "left_anti")
    whole = sorted(tuple(r) for r in compare(kept, fp, conf).collect())
    assert len(whole) == 13 and not {("F1", "F2"), ("G1", "G2")} & {r[:2] for r in whole}
    fuzzy = conf.fuzzy.model_copy(update={"compare_slice_pairs": 4})
    mat = Counting(str(Path(base) / "scratch"))
    sliced = compare_in_slices(pairs, shared, fp, conf.model_copy(update={"fuzzy": fuzzy}), mat)
    assert mat.written == 4  # 15 candidate pairs, at most 4 a slice
    assert sorted(tuple(r) for r in sliced.collect()) == whole
    fuzzy = conf.fuzzy.model_copy(update={"compare_slice_pairs": 0})
    mat = Counting(str(Path(base) / "scratch2"))
    one = compare_in_slices(pairs, shared, fp, conf.model_copy(update={"fuzzy": fuzzy}), mat)
    assert not hasattr(mat, "written")
    assert sorted(tuple(r) for r in one.collect()) == whole
