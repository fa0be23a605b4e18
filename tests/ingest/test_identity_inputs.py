"""What ingestion hands identity resolution: rows with an invalid optional field and
full-width identifiers take part in linking (issue 12 items 6 and 12, issue 16 item 5).

Landing files -> ingest (the real parser and rules) -> bronze -> identity resolution.
"""

from __future__ import annotations

from jobs.identity.job import run as run_identity
from jobs.ingest.job import ingest
from jobs.privacy.pii import hmac_py
from tests.ingest.landing_fixtures import sale, write_crm, write_pos

D = "2026-11-05"
TS = f"{D} 10:00:00"


def _crm(crm_id: str, phone: str = "", email: str = "", birth: str = "", card: str = "") -> str:
    return (
        f"{crm_id},{card},{phone},{email},,,某人,F,{birth},,,2024-01-01 10:00:00,store,,Y,N,N,"
        f"active,{D} 09:00:00"
    )


def test_rows_with_bad_optional_fields_and_full_width_identifiers_link(make_ctx, settings):
    landing = settings.paths.landing
    write_crm(
        landing,
        D,
        [
            # A bad birth date once quarantined the row, and its phone with it.
            _crm("C1", phone="13912345678", birth="19551192"),
            # Full-width phone (with +86) and e-mail, as keyed on a Chinese keyboard.
            _crm("C2", phone="＋８６ １３７ ００００ １１１１", birth="1980-01-01"),
            _crm("C3", email="ＺＨＡＯ＠ＱＱ．ＣＯＭ", card="Ｋ３"),
            _crm("C4", email="zhao@qq.com"),
        ],
    )
    write_pos(
        landing,
        D,
        "S01",
        [
            sale("O1", 1, TS, card="", phone="139-1234-5678"),
            sale("O2", 1, TS, card="", phone="13700001111"),
            sale("O3", 1, TS, card="k3"),
        ],
    )
    ctx = make_ctx(D)
    for source in ("pos", "crm"):  # no web events: identity reads an empty table
        ingest(ctx, source)
    run_identity(ctx)
    xref = {
        (r.source, r.source_key): r.member_id for r in ctx.lake.read("silver/member_xref").collect()
    }

    def phone(p: str) -> tuple[str, str]:
        return ("pos_phone", hmac_py(p, ctx.pii_key))

    assert xref[("crm", "C1")] is not None
    assert xref[("crm", "C1")] == xref[phone("13912345678")]
    assert xref[("crm", "C2")] == xref[phone("13700001111")] is not None
    assert xref[("crm", "C3")] == xref[("crm", "C4")] == xref[("pos_card", "K3")] is not None
    assert len({xref[("crm", c)] for c in ("C1", "C2", "C3")}) == 3
    members = {r.member_id: r for r in ctx.lake.read("silver/members").collect()}
    assert members[xref[("crm", "C1")]].birth_year is None  # the bad birth date is not used
