"""jobs.lake.Merge on Apache Spark + delta-spark: the same MERGEs as tests/test_lake.py,
run in the JVM worker (tests/jvm/worker.py), give the same rows."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.jvm.worker import JvmWorker
from tests.test_lake import IN_ORDER, WITH_FILTER

pytestmark = [pytest.mark.jvm]

SCRIPT = r"""
import json, sys
from pathlib import Path
from jobs import engine
from jobs.config import load_settings
from tests.test_lake import merge_in_order, merge_with_filter

spark = engine.get_spark(load_settings(env={"CDP_ENGINE": "spark"}).engine)
root = Path(sys.argv[1])
out = {"in_order": merge_in_order(spark, root / "a"), "with_filter": merge_with_filter(spark, root / "b")}
print("@@" + json.dumps(out))
"""


def test_merge_builder_on_jvm_spark(tmp_path: Path, jvm: JvmWorker) -> None:
    answer = jvm.run([str(tmp_path)], dict(os.environ), script=SCRIPT)
    assert answer["rc"] == 0, answer["output"][-4000:]
    line = next(x for x in answer["output"].splitlines() if x.startswith("@@"))
    out = {k: [tuple(r) for r in v] for k, v in json.loads(line[2:]).items()}
    assert out == {"in_order": IN_ORDER, "with_filter": WITH_FILTER}
