"""Data quality: Great Expectations batch validation and Data Docs."""
