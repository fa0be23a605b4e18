"""Landing zone -> bronze and quarantine."""
