"""CRM members, CONTRACT 1.3: one member row version, CSV; the latest updated_ts wins."""

from jobs.sources import Source

SOURCE = Source(
    name="crm",
    label="CRM",
    bronze_table="bronze/crm_members",
    typer="jobs.ingest.bronze_types:type_crm",
    generator="jobs.generate.crm:generate_crm_day",
    identity_columns={"crm": "crm_id"},
    # Only the crm_id: a CRM row of another member sharing a family phone is not theirs.
    pii_columns={"crm_id": "crm_id"},
)
