"""BG/NBD and Gamma-Gamma: maximum-likelihood fits and per-member predictions (numpy/scipy).

The published likelihoods, fitted by L-BFGS-B on the log of the parameters with
their analytic gradients:

* BG/NBD, Fader, Hardie and Lee (2005), "Counting your customers the easy way",
  equation 6: repeat purchases x in (0, T], the last at t_x, each customer buying at
  a Poisson rate ~ Gamma(r, alpha) and dropping out after a purchase with a
  probability ~ Beta(a, b).
* Gamma-Gamma, Fader, Hardie and Lee (2005), "RFM and CLV" / Fader and Hardie's note
  "The Gamma-Gamma model of monetary value" (2013), equation 1: the mean value zbar
  of a customer's x repeat transactions, value ~ Gamma(p, nu), nu ~ Gamma(q, gamma).

Members with the same (x, t_x, T) are fitted once with a weight (one-time buyers
collapse to one row per T), so a fit at 1M members evaluates far fewer rows. Inputs
are sorted before fitting and the start point is fixed, so the same data always
give the same parameters. Everything here is pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

_LOG_BOUNDS = (-15.0, 15.0)  # parameters between 3e-7 and 3e6


@dataclass(frozen=True)
class Fit:
    """A fitted model: parameters by name, the log-likelihood at them, and how it went."""

    params: dict[str, float]
    log_likelihood: float
    n_members: int
    converged: bool
    message: str


# ---- BG/NBD ---------------------------------------------------------------------------


def bg_nbd_log_likelihood(
    params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood and its gradient w.r.t. (r, alpha, a, b) (shape 4 x n)."""
    r, alpha, a, b = params
    repeat = x > 0
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (
        special.gammaln(b + x)
        + special.gammaln(a + b)
        - special.gammaln(a + b + x)
        - special.gammaln(b)
    )
    a3 = -(r + x) * np.log(alpha + big_t)
    b_x1 = np.where(repeat, b + x - 1, 1.0)
    a4 = np.where(repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf)
    mix = np.logaddexp(a3, a4)
    s4 = np.exp(a4 - mix)  # share of the "dropped out after t_x" term; 0 when x = 0
    s3 = 1.0 - s4
    psi_abx = special.digamma(a + b + x)
    grad = np.stack(
        [
            special.digamma(r + x)
            - special.digamma(r)
            + np.log(alpha)
            - s3 * np.log(alpha + big_t)
            - s4 * np.log(alpha + t_x),
            r / alpha - s3 * (r + x) / (alpha + big_t) - s4 * (r + x) / (alpha + t_x),
            special.digamma(a + b) - psi_abx + s4 / a,
            special.digamma(b + x)
            + special.digamma(a + b)
            - psi_abx
            - special.digamma(b)
            - np.where(repeat, s4 / b_x1, 0.0),
        ]
    )
    return a1 + a2 + mix, grad


def _maximise(
    loglik, start: np.ndarray, names: tuple[str, ...], weights: np.ndarray, n_members: int
) -> Fit:
    """Maximise sum(weights * loglik(params)) over log(params) with L-BFGS-B."""
    total = float(weights.sum())

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, grad = loglik(params)
        value = -float(np.dot(weights, ll)) / total
        gradient = -(grad @ weights) * params / total
        if not np.isfinite(value) or not np.all(np.isfinite(gradient)):
            return 1e300, np.zeros_like(log_params)
        return value, gradient

    res = optimize.minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        bounds=[_LOG_BOUNDS] * len(start),
        options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
    )
    params = {n: float(v) for n, v in zip(names, np.exp(res.x), strict=True)}
    return Fit(params, -float(res.fun) * total, n_members, bool(res.success), str(res.message))


def _compress(columns: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Distinct rows of ``columns`` (sorted) and how many members each stands for."""
    frame = pd.DataFrame(columns).value_counts(sort=False).sort_index().reset_index()
    weights = frame.pop("count").to_numpy(dtype=float)
    return {c: frame[c].to_numpy(dtype=float) for c in columns}, weights


def fit_bg_nbd(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> Fit:
    """Fit BG/NBD to repeat purchases ``x``, recency ``t_x`` and age ``big_t`` (one per member)."""
    rows, weights = _compress({"x": x, "t_x": t_x, "T": big_t})

    def loglik(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return bg_nbd_log_likelihood(params, rows["x"], rows["t_x"], rows["T"])

    start = np.array([1.0, max(float(np.mean(big_t)), 1e-3), 1.0, 1.0])
    return _maximise(loglik, start, ("r", "alpha", "a", "b"), weights, len(x))


def p_alive(params: dict[str, float], x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray):
    """P(alive at T | x, t_x, T) (FHL 2005 eq. 12); 1 for members without a repeat purchase."""
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    repeat = x > 0
    log_odds = (
        np.log(a)
        - np.log(np.where(repeat, b + x - 1, 1.0))
        + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
    )
    return np.where(repeat, special.expit(-log_odds), 1.0)


def expected_purchases(
    params: dict[str, float], t: float, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray
) -> np.ndarray:
    """Expected purchases in the next ``t`` units given (x, t_x, T) (FHL 2005 eq. 10).

    Computed through Euler's transformation 2F1(A, B; C; z) = (1-z)^(C-A-B)
    2F1(C-A, C-B; C; z), which keeps the hypergeometric series bounded for members with
    many purchases: the eq. 10 factor ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x;
    a+b+x-1; z) becomes (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z).
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    z = t / (alpha + big_t + t)
    c = a + b + x - 1
    tail = np.power(1.0 - z, a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, c, z)
    unconditional = c / (a - 1) * (1.0 - tail)
    return unconditional * p_alive(params, x, t_x, big_t)


# ---- Gamma-Gamma ----------------------------------------------------------------------


def gamma_gamma_log_likelihood(
    params: np.ndarray, x: np.ndarray, zbar: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood of mean repeat value ``zbar`` over ``x`` purchases, and gradient."""
    p, q, gamma = params
    px = p * x
    log_xz = np.log(x * zbar + gamma)
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(zbar)
        + px * np.log(x)
        - (px + q) * log_xz
    )
    psi = special.digamma(px + q)
    grad = np.stack(
        [
            x * (psi - special.digamma(px) + np.log(zbar) + np.log(x) - log_xz),
            psi - special.digamma(q) + np.log(gamma) - log_xz,
            q / gamma - (px + q) / (x * zbar + gamma),
        ]
    )
    return ll, grad


def fit_gamma_gamma(x: np.ndarray, zbar: np.ndarray) -> Fit:
    """Fit Gamma-Gamma on members with ``x`` >= 1 repeat purchases of mean value ``zbar`` > 0."""
    rows, weights = _compress({"x": x, "zbar": zbar})

    def loglik(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return gamma_gamma_log_likelihood(params, rows["x"], rows["zbar"])

    start = np.array([1.0, 2.0, max(float(np.mean(zbar)), 1e-3)])
    return _maximise(loglik, start, ("p", "q", "gamma"), weights, len(x))


def expected_order_value(params: dict[str, float], x: np.ndarray, zbar: np.ndarray) -> np.ndarray:
    """E(Z | x, zbar) = p (gamma + x zbar) / (p x + q - 1); the population mean when x = 0."""
    p, q, gamma = (params[k] for k in ("p", "q", "gamma"))
    x = np.where(np.isfinite(zbar) & (zbar > 0), x, 0.0)
    zbar = np.where(x > 0, zbar, 0.0)
    return p * (gamma + x * zbar) / (p * x + q - 1)


# ---- CLV ------------------------------------------------------------------------------


def discounted_purchases(
    params: dict[str, float],
    horizon: float,
    steps: int,
    yearly_rate: float,
    units_per_year: float,
    x: np.ndarray,
    t_x: np.ndarray,
    big_t: np.ndarray,
) -> np.ndarray:
    """Expected purchases over ``horizon`` units, each of ``steps`` periods discounted.

    The purchases expected in period k (k = 1..steps) are discounted to today at
    (1 + yearly_rate) ** (end of period k in years).
    """
    total = np.zeros_like(x, dtype=float)
    before = np.zeros_like(x, dtype=float)
    for k in range(1, steps + 1):
        end = horizon * k / steps
        upto = expected_purchases(params, end, x, t_x, big_t)
        total += (upto - before) / (1.0 + yearly_rate) ** (end / units_per_year)
        before = upto
    return total
