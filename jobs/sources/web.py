"""Web / app behaviour, CONTRACT 1.2: one event, JSON Lines, delivered at least once."""

from jobs.sources import Dedup, Source

SOURCE = Source(
    name="web",
    label="web / app",
    bronze_table="bronze/web_events",
    typer="jobs.ingest.bronze_types:type_web",
    generator="jobs.generate.web:generate_web_day",
    dedup=Dedup(
        policy="first_copy",
        key=("event_id",),
        duplicates_table="bronze/web_event_duplicates",
        lookup_key="_event_key",
    ),
    identity_columns={"web_user": "user_id", "web_anon": "anonymous_id"},
    pii_columns={"web_user": "user_id", "web_anon": "anonymous_id"},
)
