"""CDP batch pipeline: jobs and their library code."""
