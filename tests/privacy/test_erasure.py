"""`cdp forget` on real Delta tables: bronze from real ingestion, silver/gold/exports by hand.

Two people, Alice (erased) and Bob (kept), share nothing. After the erasure no
row, no file on disk and no readable Delta version holds any of Alice's
identifiers, Bob is untouched, and re-sent landing files do not bring her back.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from jobs.ingest.job import ingest
from jobs.lake_state import scratch_dir, staging_dir
from jobs.privacy.erasure import ErasureError, forget
from jobs.privacy.pii import hmac_py
from jobs.schemas import table_schema
from tests.ingest.landing_fixtures import event, sale, write_crm, write_pos, write_web

D1, D2 = "2026-11-01", "2026-11-02"
ALICE = {
    "crm": "crm-alice-001",
    "card": "CARD-ALICE-77",
    "phone": "13800138000",
    "email": "alice.w@qq.com",
    "id_card": "11010519491231002X",
    "user": "user-alice",
    "anon": "dev-alice",
    "member": "mem-alice",
    "retired": "mem-alice-old",
    "name": "王爱丽",
}
BOB = {
    "crm": "crm-bob-002",
    "card": "CARD-BOB-88",
    "phone": "13900139000",
    "email": "bob@163.com",
    "user": "user-bob",
    "anon": "dev-bob",
    "member": "mem-bob",
}
# How Alice's values look in the landing files (raw spellings).
ALICE_SECRETS = [
    ALICE[k] for k in ("crm", "card", "phone", "email", "id_card", "user", "anon", "name")
] + [ALICE["member"], ALICE["retired"]]


# What erasing Alice removes, table by table.
ALICE_ROWS = {
    "bronze/pos_lines": 2,  # card line and phone line; Bob's line stays
    "bronze/web_events": 2,
    "bronze/web_event_duplicates": 1,
    "bronze/crm_members": 1,
    "quarantine/pos": 1,  # the phone in _raw; the anonymous bad row stays
    "quarantine/crm": 1,
    "silver/member_xref": 5,
    "silver/identity_edges": 1,
    "silver/members": 1,
    "silver/member_id_history": 1,
    "silver/orders": 2,
    "silver/order_lines": 3,  # through her orders
    "silver/web_events": 1,
    "restricted/member_pii": 1,
    "gold/member_lifecycle": 4,  # two dates, the member and its retired id
}


def crm_line(p: dict, name: str, id_card: str = "", email: str | None = None) -> str:
    return (
        f"{p['crm']},{p['card']},{p['phone']},{email or p['email']},{id_card},{p['user']},{name},F,"
        f"1990-01-01,广东,深圳,2024-01-01 10:00:00,store,S01,Y,Y,N,active,2026-11-01 09:00:00"
    )


def write_landing(landing: Path, extra_bob_line: bool = False) -> list[Path]:
    pos = [
        sale("O-A1", 1, "2026-11-01 10:00:00", card=ALICE["card"]),
        sale("O-A2", 1, "2026-11-01 11:00:00", card="", phone="+86 138 0013 8000"),
        sale("O-B1", 1, "2026-11-01 12:00:00", card=BOB["card"], phone=BOB["phone"]),
        # Alice's line with a wrong amount: quarantined, her phone is in _raw.
        "O-A3,1,S01,2026-11-01 13:00:00,SALE,,,138-0013-8000,SKU1,生鲜,1,10.00,0,99.00,cash,,",
        "O-Z1,1,S01,2026-11-01 14:00:00,SALE,,,,SKU1,生鲜,1,10.00,0,99.00,cash,,",  # anonymous
    ]
    if extra_bob_line:
        pos.append(sale("O-B2", 1, "2026-11-01 15:00:00", card=BOB["card"]))
    web = [
        event("e-a1", "2026-11-01T10:00:00+08:00", "login", anon=ALICE["anon"], user=ALICE["user"]),
        event("e-a2", "2026-11-01T10:01:00+08:00", "product_view", anon=ALICE["anon"]),
        event("e-b1", "2026-11-01T10:02:00+08:00", "login", anon=BOB["anon"], user=BOB["user"]),
    ]
    if extra_bob_line:
        web.append(event("e-b0", "2026-11-01T08:00:00+08:00", "page_view", anon=BOB["anon"]))
    web2 = [
        event("e-a2", "2026-11-01T10:01:00+08:00", "product_view", anon=ALICE["anon"]),  # resent
        event("e-b2", "2026-11-02T09:00:00+08:00", "page_view", anon=BOB["anon"]),
    ]
    if extra_bob_line:
        web2.append(event("e-b3", "2026-11-02T09:05:00+08:00", "page_view", anon=BOB["anon"]))
    crm = [
        crm_line(ALICE, ALICE["name"], ALICE["id_card"], email="  Alice.W@QQ.com "),
        crm_line(BOB, "李波"),
        # Alice's row with a broken register time: quarantined with her e-mail in _raw.
        # (A bad gender alone no longer quarantines a row: CONTRACT 1, optional fields.)
        f"{ALICE['crm']},,,{ALICE['email']},,,,X,,,,yesterday,store,,,,,active,2026-11-01 08:00:00",
    ]
    if extra_bob_line:
        crm.append(crm_line({**BOB, "crm": "crm-bob-003"}, "李波"))
    files = [write_pos(landing, D1, "S01", pos)]
    files.append(write_web(landing, D1, "p1", web))
    files.append(write_web(landing, D2, "p1", web2))
    write_pos(landing, D2, "S01", [])
    files.append(write_crm(landing, D1, crm))
    write_crm(landing, D2, [])
    return files


def put(ctx, name: str, rows: list[dict]) -> None:
    schema = table_schema(name).struct
    data = [tuple(r.get(f.name) for f in schema.fields) for r in rows]
    ctx.lake.overwrite(ctx.spark.createDataFrame(data, schema), name)


def build_downstream(ctx, key: bytes, exports: Path) -> None:
    """silver, restricted, gold and one export folder as identity/gold/exports would leave them."""
    d1, d2 = dt.date.fromisoformat(D1), dt.date.fromisoformat(D2)
    xref = [
        ("crm", ALICE["crm"], ALICE["member"]),
        ("pos_card", ALICE["card"], ALICE["member"]),
        ("pos_phone", hmac_py(ALICE["phone"], key), ALICE["member"]),
        ("web_user", ALICE["user"], ALICE["member"]),
        ("web_anon", ALICE["anon"], ALICE["member"]),
        ("crm", BOB["crm"], BOB["member"]),
        ("pos_card", BOB["card"], BOB["member"]),
        ("pos_phone", hmac_py(BOB["phone"], key), BOB["member"]),
        ("web_user", BOB["user"], BOB["member"]),
        ("web_anon", BOB["anon"], BOB["member"]),
    ]
    put(
        ctx,
        "silver/member_xref",
        [dict(source=s, source_key=k, member_id=m, as_of_date=d2) for s, k, m in xref],
    )
    put(
        ctx,
        "silver/identity_edges",
        [
            dict(
                src_source="crm",
                src_key=ALICE["crm"],
                dst_source="pos_card",
                dst_key=ALICE["card"],
                rule="crm_card",
            ),
            dict(
                src_source="crm",
                src_key=BOB["crm"],
                dst_source="pos_card",
                dst_key=BOB["card"],
                rule="crm_card",
            ),
        ],
    )
    put(
        ctx,
        "silver/members",
        [
            dict(
                member_id=ALICE["member"],
                crm_id=ALICE["crm"],
                phone_hash=hmac_py(ALICE["phone"], key),
                phone_masked="138****8000",
                email_hash=hmac_py(ALICE["email"], key),
                email_masked="a***@qq.com",
                as_of_date=d2,
            ),
            dict(
                member_id=BOB["member"],
                crm_id=BOB["crm"],
                phone_hash=hmac_py(BOB["phone"], key),
                phone_masked="139****9000",
                as_of_date=d2,
            ),
        ],
    )
    put(
        ctx,
        "silver/member_id_history",
        [
            dict(
                member_id=ALICE["retired"],
                merged_into=ALICE["member"],
                as_of_date=d1,
                reason="merge",
            )
        ],
    )
    put(
        ctx,
        "restricted/member_pii",
        [
            dict(
                member_id=ALICE["member"],
                name=ALICE["name"],
                phone=ALICE["phone"],
                email=ALICE["email"],
                id_card_no=ALICE["id_card"],
                as_of_date=d2,
            ),
            dict(
                member_id=BOB["member"],
                name="李波",
                phone=BOB["phone"],
                email=BOB["email"],
                as_of_date=d2,
            ),
        ],
    )
    orders = [
        dict(
            order_id=o,
            channel="store",
            member_id=m,
            order_date=d1,
            order_month="2026-11",
            net_amount=Decimal("19.00"),
        )
        for o, m in (
            ("O-A1", ALICE["member"]),
            ("O-A2", ALICE["member"]),
            ("O-B1", BOB["member"]),
            ("O-Z1", None),
        )
    ]
    put(ctx, "silver/orders", orders)
    # Lines carry no member: Alice's are found through her orders.
    lines = [("O-A1", 1), ("O-A1", 2), ("O-A2", 1), ("O-B1", 1), ("O-Z1", 1)]
    put(ctx, "silver/order_lines", [
        dict(order_id=o, line_no=n, channel="store", order_date=d1, order_month="2026-11",
             net_amount=Decimal("9.50"))
        for o, n in lines
    ])  # fmt: skip
    put(
        ctx,
        "silver/web_events",
        [
            dict(event_id="e-a2", anonymous_id=ALICE["anon"], event_date=d1),  # not linked yet
            dict(
                event_id="e-b1",
                anonymous_id=BOB["anon"],
                user_id=BOB["user"],
                member_id=BOB["member"],
                event_date=d1,
            ),
        ],
    )
    for d in (d1, d2):
        ctx.lake.replace_where(
            ctx.spark.createDataFrame(
                [
                    tuple(
                        {"member_id": m, "as_of_date": d, "stage": "new"}.get(f.name)
                        for f in table_schema("gold/member_lifecycle").struct.fields
                    )
                    for m in (ALICE["member"], BOB["member"], ALICE["retired"])
                ],
                table_schema("gold/member_lifecycle").struct,
            ),
            "gold/member_lifecycle",
            f"as_of_date = '{d}'",
        )
    put(ctx, "gold/kpi_daily", [dict(as_of_date=d2, members_total=2)])
    folder = exports / D2
    folder.mkdir(parents=True)
    rows = [
        (ALICE["member"], "vip", ALICE["crm"], "138****8000"),
        (BOB["member"], "vip", BOB["crm"], "139****9000"),
    ]
    (folder / "vip.csv").write_text(
        "member_id,segment,crm_id,phone_masked\n" + "".join(",".join(r) + "\n" for r in rows),
        encoding="utf-8",
    )
    (folder / "vip.entered.csv").write_text(
        "member_id,segment,crm_id,phone_masked\n" + ",".join(rows[0]) + "\n", encoding="utf-8"
    )
    pq.write_table(
        pa.table(
            {
                c: [r[i] for r in rows]
                for i, c in enumerate(["member_id", "segment", "crm_id", "phone_masked"])
            }
        ),
        folder / "vip.parquet",
    )
    manifest = {
        "as_of_date": D2,
        "segments": [{"name": "vip", "rows": 2, "entered": 1, "exited": 0}],
        "files": [
            {"path": "vip.csv", "rows": 2, "bytes": 0, "sha256": ""},
            {"path": "vip.parquet", "rows": 2, "bytes": 0, "sha256": ""},
            {"path": "vip.entered.csv", "rows": 1, "bytes": 0, "sha256": ""},
        ],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "_SUCCESS").write_text("")


def leaks_in_files(root: Path, secrets: list[str]) -> list[str]:
    """Every file under ``root`` that holds a secret: text files as text, Parquet by value."""
    hits = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if f.suffix == ".parquet":
            table = pq.read_table(f)
            text = json.dumps(table.to_pylist(), ensure_ascii=False, default=str)
        else:
            text = f.read_bytes().decode("utf-8", errors="replace")
        low = text.lower()
        found = [s for s in secrets if s.lower() in low]
        if found:
            hits.append(f"{f.relative_to(root)}: {found}")
    return hits


ALICE_KEY = "00112233445566778899aabbccddeeff"


@pytest.fixture(scope="module")
def alice_base(spark, tmp_path_factory) -> Path:
    """The folder (landing, lake, exports, work) of Alice's and Bob's lake, built once:
    every test erases from its own copy (lake_with_alice)."""
    from jobs.context import RunContext
    from tests.lakes import settings_at

    base = tmp_path_factory.mktemp("alice") / "base"
    settings = settings_at(base)
    write_landing(settings.paths.landing)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDP_PII_KEY", ALICE_KEY)
        ctx = RunContext(settings=settings, spark=spark, as_of=dt.date.fromisoformat(D2))
        for source in ("pos", "web", "crm"):
            ingest(ctx, source)
        build_downstream(ctx, ctx.pii_key, settings.paths.exports)
    # Leftovers of a crashed run: raw rows in the staging folder.
    staging = Path(staging_dir(settings.paths.lake, "crashed-run")) / "pos"
    staging.mkdir(parents=True)
    (staging / "part.txt").write_text(ALICE["phone"])
    # ... and in a step's scratch tables (identity writes bronze CRM rows there).
    scratch = Path(scratch_dir(settings.paths.lake, "identity", "crashed-run")) / "crm_latest"
    scratch.mkdir(parents=True)
    (scratch / "part.txt").write_text(ALICE["phone"])
    (base / "work" / "pii.key").unlink()  # the test's own settings bring theirs
    return base


@pytest.fixture()
def lake_with_alice(alice_base, make_ctx, settings, monkeypatch):
    """A copy of alice_base where ``settings`` points (its key: CDP_PII_KEY, set here)."""
    import shutil

    monkeypatch.setenv("CDP_PII_KEY", ALICE_KEY)
    for folder in ("landing", "lake", "exports", "work"):
        shutil.copytree(alice_base / folder, getattr(settings.paths, folder), dirs_exist_ok=True)
    return make_ctx(D2)


def test_forget_by_phone_removes_every_trace(lake_with_alice, settings, make_ctx):
    ctx = lake_with_alice
    lake = ctx.lake
    before = {t: lake.read(t).count() for t in lake.tables()}
    versions = {t: lake.version(t) for t in lake.tables()}
    assert before["quarantine/pos"] == 2 and before["bronze/web_event_duplicates"] == 1

    receipt = forget(make_ctx(D2), phone="+86 138-0013-8000", recompute=False)

    removed = receipt["rows_removed"]
    assert removed == ALICE_ROWS
    assert receipt["members_erased"] == 2 and receipt["export_rows_removed"] == {
        f"{D2}/vip.csv": 1,
        f"{D2}/vip.parquet": 1,
        f"{D2}/vip.entered.csv": 1,
    }
    for t, n in before.items():
        assert lake.read(t).count() == n - removed.get(t, 0), t

    # Bob is untouched.
    assert sorted(r.order_id for r in lake.read("bronze/pos_lines").collect()) == ["O-B1"]
    assert lake.read("silver/member_xref").where(F.col("member_id") == BOB["member"]).count() == 5

    # No file under the lake, the exports or the work folder holds Alice, and no
    # older Delta version can be read back.
    receipt_text = Path(receipt["path"]).read_text(encoding="utf-8")
    for root in (settings.paths.lake, settings.paths.exports, settings.paths.work):
        assert leaks_in_files(root, ALICE_SECRETS) == []
    assert not Path(staging_dir(settings.paths.lake, "crashed-run")).exists()
    assert not Path(scratch_dir(settings.paths.lake, "identity", "crashed-run")).exists()
    for t in receipt["tables_vacuumed"]:
        for v in range(lake.version(t) + 1):
            if v <= versions[t]:  # every version from before the erasure is gone
                with pytest.raises(Exception):  # noqa: B017 - any engine error will do
                    lake.read_version(t, v).collect()
            else:  # versions written by the erasure itself: gone, or clean
                try:
                    rows = lake.read_version(t, v).collect()
                except Exception:  # noqa: BLE001
                    continue
                text = json.dumps([r.asDict() for r in rows], default=str, ensure_ascii=False)
                assert not [s for s in ALICE_SECRETS if s in text], (t, v)
    assert set(receipt["tables_vacuumed"]) >= set(removed)

    # Exports: manifest rewritten to match the files.
    folder = settings.paths.exports / D2
    manifest = json.loads((folder / "manifest.json").read_text())
    from jobs.exports.files import sha256_file

    for entry in manifest["files"]:
        assert entry["sha256"] == sha256_file(folder / entry["path"])
    assert {e["path"]: e["rows"] for e in manifest["files"]} == {
        "vip.csv": 1,
        "vip.parquet": 1,
        "vip.entered.csv": 0,
    }
    assert manifest["segments"][0]["rows"] == 1 and manifest["segments"][0]["entered"] == 0
    assert (folder / "vip.csv").read_text() == (
        "member_id,segment,crm_id,phone_masked\nmem-bob,vip,crm-bob-002,139****9000\n"
    )

    # The receipt: counts, no personal data.
    assert not [s for s in ALICE_SECRETS if s in receipt_text]
    doc = json.loads(receipt_text)
    assert doc["request_id"].startswith("erase-") and doc["rows_removed_total"] == 27

    # The suppression list holds keyed hashes of her identifiers only.
    key = ctx.pii_key
    listed = {(r.id_type, r.value_hash) for r in lake.read("restricted/suppression_list").collect()}
    for id_type, value in (
        ("phone", ALICE["phone"]),
        ("email", ALICE["email"]),
        ("id_card", ALICE["id_card"]),
        ("card", ALICE["card"]),
        ("crm_id", ALICE["crm"]),
        ("web_user", ALICE["user"]),
        ("web_anon", ALICE["anon"]),
    ):
        assert (id_type, hmac_py(value, key)) in listed, id_type
    assert not any(h == hmac_py(BOB["phone"], key) for _, h in listed)


def test_rows_a_merge_replaced_are_erased_from_their_files(lake_with_alice, settings, make_ctx):
    """silver/orders has deletion vectors: a MERGE that replaces a row leaves the old one
    in its file, only marked deleted. Alice's two orders moved to another month (a
    re-sent file with corrected dates) stay, marked, in the month where she has no row
    left; after the erasure no file of the lake holds them."""
    from jobs.lake import deleted_rows

    lake = lake_with_alice.lake
    moved = (
        lake.read("silver/orders")
        .where(F.col("member_id") == ALICE["member"])
        .withColumn("order_month", F.lit("2026-10"))
        .withColumn("_op", F.lit("upsert"))
    )
    lake.apply_changes(moved, "silver/orders")
    assert deleted_rows(lake.delta_table("silver/orders")) == 2
    assert {r.order_month for r in lake.read("silver/orders").collect()} == {"2026-10", "2026-11"}

    forget(make_ctx(D2), phone="+86 138-0013-8000", recompute=False)

    assert leaks_in_files(settings.paths.lake, ALICE_SECRETS) == []
    assert sorted(r.order_id for r in lake.read("silver/orders").collect()) == ["O-B1", "O-Z1"]


def test_resent_files_do_not_bring_her_back(lake_with_alice, settings, make_ctx):
    forget(make_ctx(D2), member=ALICE["member"], recompute=False)
    # The exporters send every file of both days again, each with one more row of Bob's.
    write_landing(settings.paths.landing, extra_bob_line=True)
    ctx = make_ctx(D2)
    for source in ("pos", "web", "crm"):
        res = ingest(ctx, source)
        assert res["files"] >= 1
    lake = ctx.lake
    assert sorted(r.order_id for r in lake.read("bronze/pos_lines").collect()) == ["O-B1", "O-B2"]
    assert sorted(r.event_id for r in lake.read("bronze/web_events").collect()) == [
        "e-b0",
        "e-b1",
        "e-b2",
        "e-b3",
    ]
    assert sorted(r.crm_id for r in lake.read("bronze/crm_members").collect()) == [
        "crm-bob-002",
        "crm-bob-003",
    ]
    assert lake.read("bronze/web_event_duplicates").count() == 0
    for t in ("quarantine/pos", "quarantine/crm", "quarantine/web"):
        rows = [r._raw for r in lake.read(t).collect()]
        assert not any(ALICE["crm"] in r or "138" in r for r in rows), t
    m = {
        r._source_file: (r.rows_total, r.rows_good, r.rows_bad, r.rows_suppressed)
        for r in lake.read("meta/ingest_manifest").collect()
    }
    # POS: 6 rows = Bob's 2 + anonymous bad 1 + Alice's 2 good and 1 bad suppressed.
    assert m[f"pos/{D1}/pos_S01_20261101.csv"] == (6, 2, 1, 3)
    assert m[f"crm/{D1}/members_20261101.csv"] == (4, 2, 0, 2)
    assert m[f"web/{D1}/events_20261101_p1.jsonl"] == (4, 2, 0, 2)
    assert m[f"web/{D2}/events_20261102_p1.jsonl"] == (3, 2, 0, 1)


def test_interrupted_forget_is_resumed_with_exact_counts(
    lake_with_alice, settings, make_ctx, monkeypatch
):
    """A failure right after silver/member_xref lost her rows; the same request again
    finishes it from the record (resolving her now would find nobody)."""
    from jobs.lake import Lake

    originals = {m: getattr(Lake, m) for m in ("overwrite", "replace_where")}

    def failing(method):
        def wrapper(self, df, name, *a, **kw):
            originals[method](self, df, name, *a, **kw)
            if name == "silver/member_xref":
                raise RuntimeError("killed after silver/member_xref (injected)")

        return wrapper

    for m in originals:
        monkeypatch.setattr(Lake, m, failing(m))
    with pytest.raises(RuntimeError, match="injected"):
        forget(make_ctx(D2), phone="+86 138-0013-8000", recompute=False)
    for m, f in originals.items():
        monkeypatch.setattr(Lake, m, f)
    (pending,) = (settings.paths.lake / "_cdp" / "erasure_requests").glob("erase-*.json")
    # Recorded first: every identifier is already on the suppression list.
    key = make_ctx(D2).pii_key
    listed = {r.value_hash for r in make_ctx(D2).lake.read("restricted/suppression_list").collect()}
    assert {hmac_py(v, key) for v in (ALICE["crm"], ALICE["card"], ALICE["anon"])} <= listed

    receipt = forget(make_ctx(D2), phone="13800138000", recompute=False)
    assert receipt["resumed"] is True
    assert [a["outcome"] for a in receipt["attempts"]] == ["interrupted", "completed"]
    assert receipt["rows_removed"] == ALICE_ROWS and receipt["rows_removed_total"] == 27
    first, second = (a["rows_removed"] for a in receipt["attempts"])
    assert first >= ALICE_ROWS["silver/member_xref"] and second > 0 and first + second == 27
    assert receipt["members_erased"] == 2
    assert not pending.exists()
    for root in (settings.paths.lake, settings.paths.exports, settings.paths.work):
        assert leaks_in_files(root, ALICE_SECRETS) == []
    # Asked again once finished: nothing pending, nothing of hers left to find.
    again = forget(make_ctx(D2), phone="13800138000", recompute=False)
    assert again["rows_removed_total"] == 0 and again["resumed"] is False


def test_unknown_or_invalid_requests_are_refused(lake_with_alice, make_ctx):
    with pytest.raises(ErasureError, match="no such member_id"):
        forget(make_ctx(D2), member="mem-nobody", recompute=False)
    with pytest.raises(ErasureError, match="not a valid phone"):
        forget(make_ctx(D2), phone="12345", recompute=False)
    with pytest.raises(ErasureError, match="say who"):
        forget(make_ctx(D2), recompute=False)


# ---- a killed `cdp forget` is finished by running it again (issue 12 item 2) -------------

CRASH_END = "2026-11-20"
# Columns that differ between two runs by design (run ids, times) or between two
# requests (the suppression rows name their request).
VOLATILE = {"_ingested_at", "_run_id", "ingested_at", "run_id", "validated_at", "started_at",
            "finished_at", "seconds", "detail", "generated_at", "request_id", "added_at"}  # fmt: skip
PER_RUN_TABLES = {"meta/runs", "meta/quality_results"}


def _lake_snapshot(spark, root: Path) -> dict[str, list[tuple]]:
    from jobs.lake import Lake
    from tests.reliability.test_crash_safety import _text

    lake = Lake(spark, root)
    out = {}
    for name in lake.tables():
        if name in PER_RUN_TABLES:
            continue
        df = lake.read(name)
        cols = sorted(c for c in df.columns if c not in VOLATILE)
        out[name] = sorted(tuple(_text(v) for v in r) for r in df.select(*cols).collect())
    return out


def _exports_snapshot(root: Path) -> dict[str, object]:
    """Per export folder: the manifest's data files and segments, and every listed data
    file's bytes. The run report (kind ``report``) is left out: it names the run that wrote
    it and holds no member rows."""
    out: dict[str, object] = {}
    for manifest in sorted(root.glob("*/manifest.json")):
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        files = [f for f in doc["files"] if f.get("kind") != "report"]
        out[manifest.parent.name] = (files, doc["segments"])
        for f in files:
            out[f"{manifest.parent.name}/{f['path']}"] = (manifest.parent / f["path"]).read_bytes()
    return out


@pytest.fixture(scope="module")
def full_lake(spark, tmp_path_factory):
    """A lake the whole pipeline wrote, and one buyer with a phone of their own."""
    import shutil

    import yaml

    from jobs.config import CONF_DIR
    from jobs.generate.landing import generate_landing
    from jobs.lake import Lake
    from tests.reliability.cli import cdp_env, run_cdp

    base = tmp_path_factory.mktemp("forget-crash") / "base"
    generate_landing(
        base / "landing",
        members=40,
        days=3,
        seed=3,
        end_date=dt.date.fromisoformat(CRASH_END),
        stores=6,
    )
    conf = base.parent / "conf"
    shutil.copytree(CONF_DIR, conf)
    data = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    data["ingest"]["max_quarantine_rate"] = 1.0
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    run = run_cdp(["run", "--date", CRASH_END], cdp_env(base, CDP_CONF_DIR=str(conf)))
    assert run.returncode == 0, run.stderr[-3000:]

    lake = Lake(spark, base / "lake")
    pii = lake.read("restricted/member_pii").where("phone IS NOT NULL")
    shared = pii.groupBy("phone").count().where("count > 1").select("phone")
    buyer = (
        pii.join(shared, "phone", "left_anti")
        .join(lake.read("gold/member_rfm").select("member_id").distinct(), "member_id")
        .join(lake.read("silver/members").where("crm_id IS NOT NULL"), "member_id")
        .select("member_id", "phone", "email", "crm_id")
        .orderBy("member_id")
        .first()
    )
    crm = lake.read("bronze/crm_members").where(F.col("crm_id") == buyer.crm_id).collect()
    secrets = [buyer.phone, buyer.crm_id] + [r.member_card_no for r in crm if r.member_card_no]
    secrets += [buyer.email] if buyer.email else []
    return base, conf, buyer, secrets


def _copy(base: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(base, to)
    return to


@pytest.fixture(scope="module")
def clean_forget(spark, full_lake, tmp_path_factory):
    from tests.reliability.cli import cdp_env, run_cdp

    base, conf, buyer, _ = full_lake
    where = _copy(base, tmp_path_factory.mktemp("clean") / "lake-copy")
    proc = run_cdp(["forget", "--phone", buyer.phone], cdp_env(where, CDP_CONF_DIR=str(conf)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "erased 1 member(s)" in proc.stdout and "resumed" not in proc.stdout
    (receipt,) = (where / "work" / "erasure_receipts").glob("*.json")
    doc = json.loads(receipt.read_text())
    assert doc["resumed"] is False and [a["outcome"] for a in doc["attempts"]] == ["completed"]
    return _lake_snapshot(spark, where / "lake"), _exports_snapshot(where / "exports"), doc, where


@pytest.mark.slow
def test_cdp_forget_after_a_full_run_recomputes_gold(spark, full_lake, clean_forget):
    """`cdp forget` in a subprocess on a lake the whole pipeline wrote (clean_forget's copy
    of full_lake): no table keeps a row of the member and gold is recomputed without them.
    (`cdp forget --member` through the command line: tests/objectstore/test_s3_pipeline.py.)"""
    from jobs.lake import Lake

    base, _, buyer, _ = full_lake
    *_, doc, where = clean_forget
    members_before = Lake(spark, base / "lake").read("gold/kpi_daily").first().members_total
    lake = Lake(spark, where / "lake")
    for t in lake.tables():
        df = lake.read(t)
        if "member_id" in df.columns:
            assert df.where(F.col("member_id") == buyer.member_id).count() == 0, t
    assert lake.read("gold/kpi_daily").first().members_total == members_before - 1
    (receipt,) = (where / "work" / "erasure_receipts").glob("*.json")
    assert doc["recomputed"]["as_of_date"] == CRASH_END
    assert buyer.member_id not in receipt.read_text()


def _redeliver(landing: Path) -> None:
    """Send every landing file again: POS and web files as copies under new names, CRM
    files (one name per day) again under their name, with a byte-order mark added (or
    removed): other bytes, the same rows."""
    for f in sorted(landing.glob("pos/*/pos_*.csv")):
        (f.parent / f.name.replace("pos_", "pos_R", 1)).write_bytes(f.read_bytes())
    for f in sorted(landing.glob("web/*/events_*")):
        kind, day, rest = f.name.split("_", 2)
        (f.parent / f"{kind}_{day}_r{rest}").write_bytes(f.read_bytes())
    bom = b"\xef\xbb\xbf"
    for f in sorted(landing.glob("crm/*/members_*.csv")):
        data = f.read_bytes()
        f.write_bytes(data[len(bom) :] if data.startswith(bom) else bom + data)


# The kill point after whose resumed erasure re-delivered files and a night are run.
NIGHT_AFTER_KILL_AT = "gold/member_rfm"


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at",
    [
        "restricted/suppression_list",  # right after the request is recorded
        "gold/member_rfm",  # mid-delete: bronze, quarantine and some gold done, silver not
        "gold/kpi_daily",  # mid-recompute: identity and orders rewritten, gold half
    ],
)
def test_killed_forget_is_finished_by_a_rerun(kill_at, spark, full_lake, clean_forget, tmp_path):
    from tests.reliability.cli import cdp_env, run_cdp

    base, conf, buyer, secrets = full_lake
    expected_lake, expected_exports, clean_receipt, _ = clean_forget
    where = _copy(base, tmp_path / "lake-copy")
    args = ["forget", "--phone", buyer.phone]
    killed = run_cdp(args, cdp_env(where, CDP_FAULT_KILL_AT=kill_at, CDP_CONF_DIR=str(conf)))
    assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    (pending,) = (where / "lake" / "_cdp" / "erasure_requests").glob("erase-*.json")
    assert oct(pending.stat().st_mode & 0o777) == "0o600"

    rerun = run_cdp(args, cdp_env(where, CDP_CONF_DIR=str(conf)))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "erased 1 member(s)" in rerun.stdout and "resumed request" in rerun.stdout
    assert not list((where / "lake" / "_cdp" / "erasure_requests").glob("*.json"))

    # The receipt tells the truth: one request, two attempts, each row counted once.
    (receipt,) = (where / "work" / "erasure_receipts").glob("*.json")
    doc = json.loads(receipt.read_text())
    assert doc["resumed"] is True
    assert [a["outcome"] for a in doc["attempts"]] == ["interrupted", "completed"]
    assert doc["rows_removed"] == clean_receipt["rows_removed"]
    assert doc["export_rows_removed"] == clean_receipt["export_rows_removed"]
    assert sum(a["rows_removed"] for a in doc["attempts"]) == doc["rows_removed_total"]
    assert doc["tables_vacuumed"] == clean_receipt["tables_vacuumed"]
    assert doc["members_erased"] == clean_receipt["members_erased"] == 1
    if kill_at != "restricted/suppression_list":  # the first attempt had deleted rows
        assert doc["attempts"][0]["rows_removed"] > 0

    # The lake and the exports end as after an uninterrupted erasure.
    from tests.reliability.test_crash_safety import diff

    assert diff(_lake_snapshot(spark, where / "lake"), expected_lake) == []
    assert _exports_snapshot(where / "exports") == expected_exports

    # Every landing file re-delivered, then a night: she stays gone. Once, after the
    # mid-delete kill: the other kill points end in the same lake (checked just above).
    if kill_at != NIGHT_AFTER_KILL_AT:
        return
    _redeliver(where / "landing")
    night = run_cdp(["run", "--date", CRASH_END], cdp_env(where, CDP_CONF_DIR=str(conf)))
    assert night.returncode == 0, night.stderr[-3000:]
    from jobs.lake import Lake

    lake = Lake(spark, where / "lake")
    suppressed = lake.read("meta/ingest_manifest").agg(F.sum("rows_suppressed")).first()[0]
    assert suppressed > 0
    for t in lake.tables():
        if "member_id" in lake.read(t).columns:
            assert lake.read(t).where(F.col("member_id") == buyer.member_id).count() == 0, t
    for root in ("lake", "exports"):
        assert leaks_in_files(where / root, secrets) == [], root
