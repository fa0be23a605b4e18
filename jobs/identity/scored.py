"""Optional scored pass: a Fellegi-Sunter model over the comparisons the fuzzy pass
already computes for its candidate pairs (jobs/identity/fuzzy.py: compare).

Each comparison (name, birth date, city, identifier) of a pair falls in one level of
:data:`jobs.identity.conf.FS_LEVELS` (exact, close, ..., different), or none when a
value is missing. A pair's match weight is ``log2(prior / (1 - prior))`` plus, for each
comparison with a level, ``log2(m / u)`` of that level; its probability of being one
person is ``2^w / (1 + 2^w)``. The m, u and prior come from ``cdp identity train``
(jobs/identity/train.py) through ``conf/identity_weights.yaml``.

A pair no fuzzy rule matches is linked (rule ``scored``) when its probability reaches
``scored.threshold``; a pair the never-link rules keep apart is not, and is reported
with the refused merges. Scored edges are second-pass edges: the fuzzy cluster cap and
the never-link chain split apply to them. Pure transforms, Spark built-ins only.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.identity.conf import FS_LEVELS, IdentityConf, ScoredWeights
from jobs.identity.fuzzy import pair_edges

RULE = "scored"
# Column of each comparison's level index in :func:`levels`' output.
LEVEL_COLUMNS = {name: f"level_{name}" for name in FS_LEVELS}


def _level(cases: list[tuple[Column, str]], comparison: str) -> Column:
    """Index in FS_LEVELS[comparison] of the first case that holds (level ``-``: -1,
    a missing value)."""
    out = F.lit(-1)
    for cond, level in reversed(cases):
        index = -1 if level == "-" else FS_LEVELS[comparison].index(level)
        out = F.when(cond, F.lit(index)).otherwise(out)
    return out


def level_columns() -> dict[str, Column]:
    """Level index of each comparison over :func:`jobs.identity.fuzzy.compare`'s columns;
    -1 when the value is missing on either side (the comparison is left out)."""
    c = F.col
    different = F.lit(True)
    return {
        "name": _level(
            [(c("name_missing"), "-"), (c("name_same"), "exact"), (c("name_close"), "close"),
             (c("name_near") | c("token_close"), "near"), (different, "different")], "name",
        ),
        "birth_date": _level(
            [(c("birth_date_missing"), "-"), (c("dob_same"), "exact"),
             (c("dob_close"), "close"), (different, "different")], "birth_date",
        ),
        "city": _level(
            [(c("city_same"), "exact"), (c("city_close"), "close"),
             (c("province_same"), "province"),
             (c("city_key_missing") & c("province_key_missing"), "-"),
             (different, "different")], "city",
        ),
        "identifier": _level(
            [(c("identifier_typo"), "typo"), (c("identifier_close"), "shared"),
             (different, "different")], "identifier",
        ),
    }  # fmt: skip


def levels(compared: DataFrame) -> DataFrame:
    """``compared`` (:func:`jobs.identity.fuzzy.compare`) with one integer column per
    comparison (:data:`LEVEL_COLUMNS`): the level's index in FS_LEVELS, -1 when missing."""
    return compared.select(
        "*", *[col.alias(LEVEL_COLUMNS[name]) for name, col in level_columns().items()]
    )


def log2_odds(p: float) -> float:
    return math.log2(p / (1 - p))


def match_weight(weights: ScoredWeights) -> Column:
    """A pair's Fellegi-Sunter match weight (log2 odds of one person) over
    :func:`levels`' columns."""
    total = F.lit(log2_odds(weights.prior))
    for name, level_names in FS_LEVELS.items():
        lw = weights.comparisons[name].levels
        term = F.lit(0.0)
        for i, level in enumerate(level_names):
            bayes = math.log2(lw[level].m / lw[level].u)
            term = F.when(F.col(LEVEL_COLUMNS[name]) == i, F.lit(bayes)).otherwise(term)
        total = total + term
    return total


def scored_pairs(labelled: DataFrame, conf: IdentityConf) -> tuple[DataFrame, DataFrame]:
    """Edges of the pairs no fuzzy rule matches whose match probability reaches
    ``scored.threshold``: (linked, vetoed by a never-link rule), both edge rows
    (rule ``scored``, ``scored.confidence``).

    Input: :func:`jobs.identity.fuzzy.labelled_pairs` (one candidate pair (x, y), x < y).
    """
    s = conf.scored
    if s.weights is None:
        raise ValueError("scored.enabled needs weights: run `cdp identity train`")
    above = (
        levels(labelled.filter(F.col("rule").isNull()))
        .filter(match_weight(s.weights) >= F.lit(log2_odds(s.threshold)))
        .withColumn("rule", F.lit(RULE))
        .withColumn("confidence", F.lit(s.confidence))
    )
    return pair_edges(above.filter(~F.col("veto"))), pair_edges(above.filter(F.col("veto")))
