"""The engine comparison itself: floats within a relative 1e-9, everything else exact."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from tests.jvm.lakes import differences


def _lake(root: Path, ratio: float, amount: int) -> Path:
    data = pa.table({"member_id": ["m1", "m2"], "ratio": [ratio, 0.5], "amount": [amount, 7]})
    write_deltalake(str(root / "gold" / "member_features"), data)
    return root


def test_last_bit_float_differences_are_the_same_rows(tmp_path):
    sail = _lake(tmp_path / "a", 0.93160464650001, 10)  # 9 digits: ...647
    spark = _lake(tmp_path / "b", 0.93160464649999, 10)  # ...646
    assert differences(sail, spark) == []


def test_real_differences_are_reported(tmp_path):
    sail = _lake(tmp_path / "a", 0.93, 10)
    assert differences(sail, _lake(tmp_path / "b", 0.94, 10))
    assert differences(sail, _lake(tmp_path / "c", 0.93, 11))


def test_map_entries_compare_in_any_order(tmp_path):
    kind = pa.map_(pa.string(), pa.float64())

    def lake(root: Path, entries: list) -> Path:
        data = pa.table({"member_id": ["m1"], "shares": pa.array([entries], kind)})
        write_deltalake(str(root / "gold" / "member_features"), data)
        return root

    sail = lake(tmp_path / "a", [("生鲜", 0.25), ("母婴", 0.75)])
    assert differences(sail, lake(tmp_path / "b", [("母婴", 0.75), ("生鲜", 0.25)])) == []
    assert differences(sail, lake(tmp_path / "c", [("母婴", 0.5), ("生鲜", 0.5)]))
