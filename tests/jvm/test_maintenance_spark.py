"""`cdp maintain` on the JVM engine: Delta SQL OPTIMIZE and VACUUM through the session.

The same small tables and expectations as tests/test_maintenance.py (delta-rs), so both
engines report and do the same. Runs in the JVM worker (tests/jvm/worker.py): this
process may already hold a Spark Connect session to Sail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tests.jvm.worker import JvmWorker

pytestmark = [pytest.mark.jvm]

SCRIPT = r"""
import json, sys
from pathlib import Path
import pyarrow as pa
from deltalake import write_deltalake
from jobs.config import load_settings, with_paths
from jobs.maintenance import MaintenanceConf, TableMaintenance, maintain_all

lake = Path(sys.argv[1])
for name, appends in (("gold/member_rfm", 4), ("silver/orders", 3), ("gold/member_tags", 2)):
    for i in range(appends):
        write_deltalake(str(lake / name), pa.table({"k": [i, i + 100], "v": [f"a{i}", f"b{i}"]}),
                        mode="append")
settings = with_paths(load_settings(env={"CDP_ENGINE": "spark"}), lake=lake)
conf = MaintenanceConf(retention_hours=0, enforce_retention_duration=False,
                       tables={"gold/member_tags": TableMaintenance(retention_hours=168)})
lines = list(maintain_all(settings, conf))
strict = MaintenanceConf(retention_hours=0, enforce_retention_duration=True)
try:
    list(maintain_all(settings, strict))
    refused = None
except RuntimeError as exc:
    refused = str(exc)
print("@@" + json.dumps({"lines": lines, "refused": refused}))
"""


def test_optimize_and_vacuum_as_delta_sql(tmp_path: Path, jvm: JvmWorker) -> None:
    lake = tmp_path / "lake"
    answer = jvm.run([str(lake)], dict(os.environ), script=SCRIPT)
    assert answer["rc"] == 0, answer["output"][-4000:]
    lines = answer["output"].splitlines()
    out = json.loads(next(x for x in lines if x.startswith("@@"))[2:])
    assert out["lines"] == [
        "gold/member_rfm: v3, compacted 4 -> 1 files, vacuumed 4 files (retention 0h)",
        "gold/member_tags: v1, compacted 2 -> 1 files, vacuumed 0 files (retention 168h)",
        "silver/orders: v2, compacted 3 -> 1 files, vacuumed 3 files (retention 0h)",
    ]
    # Delta refuses a retention below its 7-day minimum unless told otherwise.
    assert out["refused"] and "gold/member_rfm" in out["refused"]
    table = DeltaTable(str(lake / "gold" / "member_rfm"))
    assert sorted(table.to_pyarrow_table().column("k").to_pylist()) == sorted(
        [i for i in range(4)] + [i + 100 for i in range(4)]
    )
    on_disk = {p.name for p in (lake / "gold" / "member_rfm").rglob("*.parquet")}
    assert on_disk == {p.rsplit("/", 1)[-1] for p in table.file_uris()}
    assert len(on_disk) == 1
