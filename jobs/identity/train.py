"""`cdp identity train --date D`: Fellegi-Sunter weights of the scored pass
(jobs/identity/scored.py), trained offline with EM on the lake's own CRM records and
written to ``conf/identity_weights.yaml`` (conf/identity.yaml: ``scored.weights_file``).

* u (P(level | two people)) is the share of each level among all pairs of
  ``scored.train.random_records`` sampled records (almost all of them two people).
* m (P(level | same person)) comes from EM with u fixed, one session per blocking key
  of :data:`SESSIONS` (as Splink trains one per blocking rule): pairs with the same
  birth date and city give m of name and identifier, pairs with the same sorted name
  m of birth date, city and identifier (averaged); a session leaves out what its pairs
  agree on by construction. (One EM over all candidate pairs with u fixed calls every
  candidate a match; with u free it took common names for the matches.)
* The prior (the share of candidate pairs that are one person: the pass scores only
  those) is fitted last over the fuzzy pass's candidate pairs with m and u fixed.

Only the counts of each pattern of comparison levels leave Spark (a few hundred rows at
most); EM runs on them in numpy in the driver. The formulas (conditional independence
of the comparisons; a missing value leaves its comparison out):

* E step: P(match | pattern) = prior * prod m / (prior * prod m + (1 - prior) * prod u)
* M step: prior = sum(count * P) / sum(count); m[level] = sum of count * P over the
  patterns at that level / the same sum over the patterns where the comparison has one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.config import CONF_DIR
from jobs.identity.conf import (
    FS_LEVELS,
    ComparisonWeights,
    IdentityConf,
    LevelWeights,
    ScoredTrainConf,
    ScoredWeights,
)
from jobs.identity.corroborate import crm_profiles, junk_value_pairs
from jobs.identity.fuzzy import block_keys, candidate_pairs, compare, fuzzy_profiles
from jobs.identity.graph import crm_identifiers, latest_crm_versions
from jobs.identity.scored import LEVEL_COLUMNS, levels

# EM sessions: blocking key tag (fuzzy.block_keys) -> the comparisons its pairs agree on
# by construction (left out of that session's EM). Same birth date and city: m of name
# and identifier; same sorted name: m of birth date, city and identifier.
SESSIONS: dict[str, tuple[str, ...]] = {"dc": ("birth_date", "city"), "n": ("name",)}
# Probabilities are kept inside [FLOOR, 1 - FLOOR] (a level never seen is unlikely, not
# impossible: a log of 0 would veto every pair holding it).
FLOOR = 1e-6


@dataclass(frozen=True)
class EMResult:
    prior: float
    m: list[np.ndarray]  # per comparison (FS_LEVELS order), P(level | same person)
    iterations: int
    converged: bool
    max_change: float


def pattern_counts(compared: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(patterns, counts): each distinct vector of comparison levels (one row, FS_LEVELS
    order, -1 missing) and how many pairs of ``compared`` have it."""
    cols = [LEVEL_COLUMNS[name] for name in FS_LEVELS]
    rows = levels(compared).groupBy(*cols).agg(F.count(F.lit(1)).alias("n")).collect()
    patterns = np.array([[r[c] for c in cols] for r in rows], dtype=np.int64)
    counts = np.array([r["n"] for r in rows], dtype=np.float64)
    return patterns.reshape(len(rows), len(cols)), counts


def level_shares(column: np.ndarray, weight: np.ndarray, n_levels: int) -> np.ndarray:
    """Weighted share of each level among the pairs where the comparison has one,
    kept inside [FLOOR, 1 - FLOOR]."""
    have = column >= 0
    total = np.bincount(column[have], weights=weight[have], minlength=n_levels)
    if total.sum() <= 0:
        return np.full(n_levels, 1.0 / n_levels)
    shares = np.clip(total / total.sum(), FLOOR, 1 - FLOOR)
    return shares / shares.sum()


def _log_likelihood(patterns: np.ndarray, probs: list[np.ndarray]) -> np.ndarray:
    """Per pattern, the sum over comparisons with a level of log P(level)."""
    out = np.zeros(len(patterns))
    for k, p in enumerate(probs):
        g = patterns[:, k]
        out += np.where(g >= 0, np.log(p[np.maximum(g, 0)]), 0.0)
    return out


def match_probability(
    patterns: np.ndarray, prior: float, m: list[np.ndarray], u: list[np.ndarray]
) -> np.ndarray:
    """P(same person | pattern) for each pattern (E step)."""
    log_odds = (
        np.log(prior) - np.log1p(-prior) + _log_likelihood(patterns, m)
        - _log_likelihood(patterns, u)
    )  # fmt: skip
    return 1.0 / (1.0 + np.exp(-np.clip(log_odds, -700, 700)))


def _initial_m(n_levels: int) -> np.ndarray:
    """Best levels most likely among matches: (n, n-1, ..., 1) squared, normalised."""
    w = np.arange(n_levels, 0, -1, dtype=np.float64) ** 2
    return w / w.sum()


def expectation_maximisation(
    patterns: np.ndarray,
    counts: np.ndarray,
    u: list[np.ndarray],
    train: ScoredTrainConf,
    fit_m: bool = True,
    m_start: list[np.ndarray] | None = None,
) -> EMResult:
    """EM for m (unless ``fit_m`` is false) and the prior with u fixed, until no
    parameter moves by more than ``train.tolerance`` (or ``train.max_iterations``).
    A comparison left out (-1 in every pattern) keeps its starting m."""
    sizes = [len(levels_) for levels_ in FS_LEVELS.values()]
    m = list(m_start) if m_start is not None else [_initial_m(n) for n in sizes]
    prior, change = 0.1, float("inf")
    for iteration in range(1, train.max_iterations + 1):
        weight = counts * match_probability(patterns, prior, m, u)
        new_prior = float(np.clip(weight.sum() / counts.sum(), FLOOR, 1 - FLOOR))
        new_m = [
            level_shares(patterns[:, k], weight, n) if fit_m and (patterns[:, k] >= 0).any()
            else m[k]
            for k, n in enumerate(sizes)
        ]  # fmt: skip
        change = max(
            abs(new_prior - prior),
            *(float(np.abs(x - y).max()) for x, y in zip(new_m, m, strict=True)),
        )
        prior, m = new_prior, new_m
        if change < train.tolerance:
            return EMResult(prior, m, iteration, True, change)
    return EMResult(prior, m, train.max_iterations, False, change)


def random_pairs(fp: DataFrame, n_records: int, seed: int) -> DataFrame:
    """Every pair (x, y), x < y, of ``n_records`` records drawn by a seeded hash; no
    shared junk value (shares_junk false)."""
    sample = fp.select("crm_id").orderBy(F.xxhash64("crm_id", F.lit(seed))).limit(n_records)
    a, b = sample.alias("a"), sample.alias("b")
    return a.join(b, F.col("a.crm_id") < F.col("b.crm_id")).select(
        F.col("a.crm_id").alias("x"),
        F.col("b.crm_id").alias("y"),
        F.lit(False).alias("shares_junk"),
    )


def session_pairs(fp: DataFrame, conf: IdentityConf, tag: str, sharing: DataFrame) -> DataFrame:
    """Pairs sharing a blocking key of one kind (``tag``, :func:`block_keys`; blocks of at
    most ``fuzzy.max_block_size``); shares_junk: they share an identifier value
    (``sharing``). Output grain: one (x, y), x < y."""
    keys = block_keys(fp, conf).filter(F.col("block").startswith(tag + "|"))
    sizes = keys.groupBy("block").agg(F.count(F.lit(1)).alias("n"))
    small = sizes.filter((F.col("n") >= 2) & (F.col("n") <= conf.fuzzy.max_block_size))
    grp = keys.join(small.select("block"), "block", "left_semi")
    a, b = grp.alias("a"), grp.alias("b")
    pairs = (
        a.join(b, (F.col("a.block") == F.col("b.block")) & (F.col("a.crm_id") < F.col("b.crm_id")))
        .select(F.col("a.crm_id").alias("x"), F.col("b.crm_id").alias("y"))
        .distinct()
    )
    shared = sharing.select("x", "y").distinct().withColumn("shares_junk", F.lit(True))
    return pairs.join(shared, ["x", "y"], "left").fillna(False, ["shares_junk"])


def _session_m(
    patterns: np.ndarray,
    counts: np.ndarray,
    u: list[np.ndarray],
    train: ScoredTrainConf,
    fixed: tuple[str, ...],
) -> tuple[list[np.ndarray], EMResult]:
    """m of the comparisons a blocking session does not fix (the fixed ones agree by
    construction: left out)."""
    masked = patterns.copy()
    for name in fixed:
        masked[:, list(FS_LEVELS).index(name)] = -1
    result = expectation_maximisation(masked, counts, u, train)
    return result.m, result


def estimate_m(
    sessions: dict[str, tuple[np.ndarray, np.ndarray]],
    u: list[np.ndarray],
    train: ScoredTrainConf,
) -> tuple[list[np.ndarray], list[EMResult]]:
    """m of each comparison: the mean over the blocking sessions (:data:`SESSIONS`) that
    do not fix it, as Splink trains one EM session per blocking rule."""
    sums = [np.zeros(len(v)) for v in FS_LEVELS.values()]
    n = [0] * len(FS_LEVELS)
    results = []
    for tag, (patterns, counts) in sessions.items():
        m, result = _session_m(patterns, counts, u, train, SESSIONS[tag])
        results.append(result)
        for k, name in enumerate(FS_LEVELS):
            if name not in SESSIONS[tag] and (patterns[:, k] >= 0).any():
                sums[k] += m[k]
                n[k] += 1
    sizes = [len(v) for v in FS_LEVELS.values()]
    return [
        s / c if c else _initial_m(size) for s, c, size in zip(sums, n, sizes, strict=True)
    ], results


def _weights(
    m: list[np.ndarray],
    u: list[np.ndarray],
    prior: EMResult,
    results: list[EMResult],
    **figures: object,
) -> dict:
    comparisons = {
        name: ComparisonWeights(
            levels={
                level: LevelWeights(m=float(m[k][i]), u=float(u[k][i]))
                for i, level in enumerate(level_names)
            }
        )
        for k, (name, level_names) in enumerate(FS_LEVELS.items())
    }
    every = [*results, prior]
    return dict(
        comparisons=comparisons, prior=prior.prior,
        iterations=sum(r.iterations for r in every),
        converged=all(r.converged for r in every),
        max_change=max(r.max_change for r in every), **figures,
    )  # fmt: skip


def train_weights(crm: DataFrame, conf: IdentityConf, key: bytes, as_of: dt.date) -> ScoredWeights:
    """Weights from ``crm`` (bronze/crm_members row versions dated <= ``as_of``): u from
    random pairs, m from one EM session per blocking key of :data:`SESSIONS` (u fixed),
    then the prior over all the fuzzy pass's candidate pairs (m and u fixed)."""
    crm = latest_crm_versions(crm)
    crm_ids = crm_identifiers(crm, key)
    latest = crm.filter(F.col("is_latest"))
    fp = fuzzy_profiles(latest, crm_profiles(latest, crm_ids), crm_ids).cache()
    values = crm_ids.filter(F.col("valid")).select("id_type", "key").distinct()
    sharing = junk_value_pairs(crm_ids, values, conf)
    train = conf.scored.train
    r_patterns, r_counts = pattern_counts(
        compare(random_pairs(fp, train.random_records, train.seed), fp, conf)
    )
    u = [level_shares(r_patterns[:, k], r_counts, len(v)) for k, v in enumerate(FS_LEVELS.values())]
    sessions = {
        tag: pattern_counts(compare(session_pairs(fp, conf, tag, sharing), fp, conf))
        for tag in SESSIONS
    }
    patterns, counts = pattern_counts(compare(candidate_pairs(fp, conf, sharing), fp, conf))
    if not counts.sum() or not all(c.sum() for _, c in sessions.values()):
        raise ValueError("too few candidate pairs to train on: the lake has too few CRM records")
    m, results = estimate_m(sessions, u, train)
    prior = expectation_maximisation(patterns, counts, u, train, fit_m=False, m_start=m)
    return ScoredWeights(
        **_weights(m, u, prior, results, trained_on=as_of, records=fp.count(),
                   candidate_pairs=int(counts.sum()), random_pairs=int(r_counts.sum()))
    )  # fmt: skip


def weights_path(conf: IdentityConf, conf_dir: Path | None = None) -> Path:
    return (conf_dir or CONF_DIR) / conf.scored.weights_file


def write_weights(weights: ScoredWeights, path: Path) -> None:
    """Write ``weights`` as YAML with a header saying what wrote it."""
    header = (
        "# Fellegi-Sunter weights of the scored identity pass, written by\n"
        "# `cdp identity train` (jobs/identity/train.py); validated when loaded.\n"
    )
    body = yaml.safe_dump(weights.model_dump(mode="json"), sort_keys=False)
    path.write_text(header + body, encoding="utf-8")


def train(ctx, conf: IdentityConf, out: Path) -> ScoredWeights:
    """Train on the lake of ``ctx`` as of ``ctx.as_of`` and write the weights to ``out``."""
    crm = ctx.lake.read("bronze/crm_members").filter(F.col("_business_date") <= F.lit(ctx.as_of))
    weights = train_weights(crm, conf, ctx.pii_key, ctx.as_of)
    write_weights(weights, out)
    return weights
