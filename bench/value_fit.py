"""Time the value step's driver part (BG/NBD + Gamma-Gamma fit, scoring) on a synthetic summary.

    uv run --frozen python bench/value_fit.py                    # 100k and 1M members
    uv run --frozen python bench/value_fit.py --members 250000

The summary has the shape Spark hands to the driver (one row per buyer: repeat purchase
days, span, tenure in days, mean repeat value), drawn from a BG/NBD-like process over two
years (gamma purchase rates, geometric dropout after each purchase, gamma order values).
Prints seconds for the fit of each model and for scoring every member.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from jobs.gold.value import fit_models, load_value, score


def synthetic_summary(n: int, seed: int = 1, days: int = 730) -> pd.DataFrame:
    """One row per buyer, as jobs.gold.value.member_summary produces (days, not weeks)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, days, n)
    rate = rng.gamma(0.5, 1 / 40, n)  # purchase days per day
    drop = rng.beta(1.0, 6.0, n)  # dropout after each purchase
    alive_for = np.minimum(rng.geometric(np.maximum(drop, 1e-3)) / np.maximum(rate, 1e-4), 1e9)
    active = np.minimum(alive_for, tenure).astype(int)
    repeats = np.minimum(rng.poisson(rate * active), active)
    span = np.where(repeats > 0, np.maximum(repeats, (rng.random(n) * active).astype(int)), 0)
    value = rng.gamma(6.0, 1.0, n) * 150 / rng.gamma(3.7, 1.0, n)
    mean = np.where(repeats > 0, value * rng.gamma(20, 1 / 20, n), np.nan)
    return pd.DataFrame(
        {
            "member_id": [f"m{i:08d}" for i in range(n)],
            "repeat_purchase_days": repeats.astype("int64"),
            "repeat_span_days": span.astype("int64"),
            "tenure_days": tenure.astype("int64"),
            "repeat_value_mean": mean,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="*", default=[100_000, 1_000_000])
    args = parser.parse_args()
    conf = load_value()
    for n in args.members:
        summary = synthetic_summary(n)
        t0 = time.perf_counter()
        models = fit_models(summary, conf)
        t1 = time.perf_counter()
        scored = score(summary, models, conf)
        t2 = time.perf_counter()
        fits = {k: m.get("fit_seconds") for k, m in models.items()}
        print(  # noqa: T201 - a benchmark prints its figures
            f"{n:>9,} members: fit {t1 - t0:6.1f} s {fits}, score {t2 - t1:6.1f} s, "
            f"n_fitted {[m['n_members'] for m in models.values()]}, "
            f"converged {[m['converged'] for m in models.values()]}, "
            f"params {[{k: round(v, 3) for k, v in (m['params'] or {}).items()} for m in models.values()]}, "
            f"clv finite {np.isfinite(scored['clv_365d']).mean():.3f}"
        )


if __name__ == "__main__":
    main()
