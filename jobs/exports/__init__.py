"""Segment exports for downstream tools (jobs.exports.segments)."""
