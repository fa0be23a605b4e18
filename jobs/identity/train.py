"""`cdp identity train --date D`: Fellegi-Sunter weights of the scored pass
(jobs/identity/scored.py), trained offline with EM on the lake's own CRM records and
written to ``conf/identity_weights.yaml`` (conf/identity.yaml: ``scored.weights_file``).

* m (P(level | same person)), u (P(level | two people)) and the prior (the share of
  candidate pairs that are one person) come from EM over the fuzzy pass's candidate
  pairs (its blocking keys) plus the pairs sharing an identifier value: the pass only
  ever scores candidate pairs, so u is that of two people who share a blocking key.
* EM starts u from the share of each level among random pairs of
  ``scored.train.random_records`` sampled records (almost all of them two people; the
  u Splink keeps fixed). Held fixed here, it made EM call every candidate pair a match
  (a candidate pair agrees on far more than a random one).

Only the counts of each pattern of comparison levels leave Spark (a few hundred rows at
most); EM runs on them in numpy in the driver. The formulas (conditional independence
of the comparisons; a missing value leaves its comparison out):

* E step: P(match | pattern) = prior * prod m / (prior * prod m + (1 - prior) * prod u)
* M step: prior = sum(count * P) / sum(count); m[level] = sum of count * P over the
  patterns at that level / the same sum over the patterns where the comparison has one;
  u[level] the same with 1 - P.
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
from jobs.identity.fuzzy import candidate_pairs, compare, fuzzy_profiles
from jobs.identity.graph import crm_identifiers, latest_crm_versions
from jobs.identity.scored import LEVEL_COLUMNS, levels

# Probabilities are kept inside [FLOOR, 1 - FLOOR] (a level never seen is unlikely, not
# impossible: a log of 0 would veto every pair holding it).
FLOOR = 1e-6


@dataclass(frozen=True)
class EMResult:
    prior: float
    m: list[np.ndarray]  # per comparison (FS_LEVELS order), P(level | same person)
    u: list[np.ndarray]  # per comparison, P(level | two people) among candidate pairs
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
    patterns: np.ndarray, counts: np.ndarray, u_start: list[np.ndarray], train: ScoredTrainConf
) -> EMResult:
    """EM for m, u and the prior from ``u_start``, until no parameter moves by more than
    ``train.tolerance`` (or ``train.max_iterations``)."""
    sizes = [len(levels_) for levels_ in FS_LEVELS.values()]
    m, u = [_initial_m(n) for n in sizes], list(u_start)
    prior, change = 0.1, float("inf")
    for iteration in range(1, train.max_iterations + 1):
        p = match_probability(patterns, prior, m, u)
        match, non_match = counts * p, counts * (1 - p)
        new_prior = float(np.clip(match.sum() / counts.sum(), FLOOR, 1 - FLOOR))
        new_m = [level_shares(patterns[:, k], match, n) for k, n in enumerate(sizes)]
        new_u = [level_shares(patterns[:, k], non_match, n) for k, n in enumerate(sizes)]
        change = max(
            abs(new_prior - prior),
            *(float(np.abs(a - b).max()) for a, b in zip(new_m + new_u, m + u, strict=True)),
        )
        prior, m, u = new_prior, new_m, new_u
        if change < train.tolerance:
            return EMResult(prior, m, u, iteration, True, change)
    return EMResult(prior, m, u, train.max_iterations, False, change)


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


def train_weights(crm: DataFrame, conf: IdentityConf, key: bytes, as_of: dt.date) -> ScoredWeights:
    """Weights from ``crm`` (bronze/crm_members row versions dated <= ``as_of``)."""
    crm = latest_crm_versions(crm)
    crm_ids = crm_identifiers(crm, key)
    latest = crm.filter(F.col("is_latest"))
    fp = fuzzy_profiles(latest, crm_profiles(latest, crm_ids), crm_ids).cache()
    values = crm_ids.filter(F.col("valid")).select("id_type", "key").distinct()
    sharing = junk_value_pairs(crm_ids, values, conf)
    candidates = candidate_pairs(fp, conf, sharing)
    patterns, counts = pattern_counts(compare(candidates, fp, conf))
    train = conf.scored.train
    r_patterns, r_counts = pattern_counts(
        compare(random_pairs(fp, train.random_records, train.seed), fp, conf)
    )
    sizes = [len(levels_) for levels_ in FS_LEVELS.values()]
    u = [level_shares(r_patterns[:, k], r_counts, n) for k, n in enumerate(sizes)]
    if not counts.sum():
        raise ValueError("no candidate pairs to train on: the lake has too few CRM records")
    result = expectation_maximisation(patterns, counts, u, train)
    comparisons = {
        name: ComparisonWeights(
            levels={
                level: LevelWeights(m=float(result.m[k][i]), u=float(result.u[k][i]))
                for i, level in enumerate(level_names)
            }
        )
        for k, (name, level_names) in enumerate(FS_LEVELS.items())
    }
    return ScoredWeights(
        trained_on=as_of, records=fp.count(), candidate_pairs=int(counts.sum()),
        random_pairs=int(r_counts.sum()), iterations=result.iterations,
        converged=result.converged, max_change=result.max_change, prior=result.prior,
        comparisons=comparisons,
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
