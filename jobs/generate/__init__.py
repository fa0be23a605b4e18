"""`cdp generate`: a realistic, deterministic sample landing zone with ground truth.

Entry point: :func:`jobs.generate.landing.generate_landing`.
"""
