"""Loyalty points ledger, CONTRACT 1.4: one points transaction, CSV.

Its rows name a member by ``crm_id`` or ``member_card_no``; both are identities the
CRM and POS already bring into the identity graph, so the ledger only looks them up
(silver/points_ledger). Optional: a chain without a loyalty system sends no folder.
"""

from jobs.sources import Dedup, Source

CONTENT_COLUMNS = (
    "crm_id", "member_card_no", "txn_ts", "txn_type", "points", "order_id", "store_id",
    "reason", "expire_date",
)  # fmt: skip

SOURCE = Source(
    name="loyalty",
    label="loyalty ledger",
    bronze_table="bronze/loyalty_ledger",
    typer="jobs.ingest.bronze_types:type_loyalty",
    generator="jobs.generate.loyalty:generate_loyalty",
    dedup=Dedup(
        policy="first_copy_conflicts",
        key=("txn_id",),
        duplicates_table="bronze/loyalty_duplicates",
        content_columns=CONTENT_COLUMNS,
        duplicate_reason="duplicate_txn",
        conflict_reason="txn_id_conflict",
    ),
    identity_columns={"crm": "crm_id", "pos_card": "member_card_no"},
    identity_role="resolves",
    pii_columns={"crm_id": "crm_id", "card": "member_card_no"},
    optional=True,
)
