"""The HTML run report (jobs.report.html)."""
