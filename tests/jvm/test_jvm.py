"""The pure transforms on Apache Spark (tests/jvm/transforms_on_jvm.py), in the JVM worker."""

import os

import pytest

from tests.jvm.worker import JvmWorker

SCRIPT = "import sys\nfrom tests.jvm.transforms_on_jvm import main\nsys.exit(main())\n"


@pytest.mark.jvm
def test_pure_transforms_run_on_plain_spark(jvm: JvmWorker) -> None:
    answer = jvm.run([], dict(os.environ), script=SCRIPT)
    assert answer["rc"] == 0, answer["output"][-3000:]
    assert "FAILED" not in answer["output"], answer["output"]
    assert "ok check_ingest" in answer["output"]
    assert "ok check_symmetric_difference" in answer["output"]
