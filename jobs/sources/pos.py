"""POS (in-store sales), CONTRACT 1.1: one row per order line, CSV."""

from jobs.sources import Dedup, Source

CONTENT_COLUMNS = (
    "store_id", "order_ts", "txn_type", "ref_order_id", "member_card_no", "phone", "sku",
    "category", "qty", "unit_price", "discount", "amount", "payment_method", "points_earned",
    "points_redeemed",
)  # fmt: skip

SOURCE = Source(
    name="pos",
    label="POS",
    bronze_table="bronze/pos_lines",
    typer="jobs.ingest.bronze_types:type_pos",
    generator="jobs.generate.pos:generate_pos_day",
    dedup=Dedup(
        policy="first_copy_conflicts",
        key=("order_id", "line_no"),
        duplicates_table="bronze/pos_line_duplicates",
        content_columns=CONTENT_COLUMNS,
        duplicate_reason="duplicate_line",
        conflict_reason="duplicate_line_conflict",
    ),
    identity_columns={"pos_card": "member_card_no", "pos_phone": "phone"},
    pii_columns={"card": "member_card_no", "phone": "phone"},
)
