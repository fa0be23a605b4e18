"""The engine comparison itself: floats within a relative 1e-9, everything else exact."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

from tests.jvm.lakes import compare_exports, compare_lakes


def _lake(root: Path, ratio: float, amount: int) -> Path:
    data = pa.table({"member_id": ["m1", "m2"], "ratio": [ratio, 0.5], "amount": [amount, 7]})
    write_deltalake(str(root / "gold" / "member_features"), data)
    return root


def test_last_bit_float_differences_are_the_same_rows(tmp_path):
    sail = _lake(tmp_path / "a", 0.93160464650001, 10)  # 9 digits: ...647
    spark = _lake(tmp_path / "b", 0.93160464649999, 10)  # ...646
    assert compare_lakes(sail, spark) == []


def test_real_differences_are_reported(tmp_path):
    sail = _lake(tmp_path / "a", 0.93, 10)
    assert compare_lakes(sail, _lake(tmp_path / "b", 0.94, 10))
    assert compare_lakes(sail, _lake(tmp_path / "c", 0.93, 11))


def test_duplicate_rows_count(tmp_path):
    def lake(root: Path, ids: list[str]) -> Path:
        write_deltalake(str(root / "silver" / "orders"), pa.table({"order_id": ids}))
        return root

    problems = compare_lakes(lake(tmp_path / "a", ["o1", "o1"]), lake(tmp_path / "b", ["o1"]))
    assert problems and problems[0].startswith("silver/orders: 2 vs 1 rows, 1 only in the first")


def test_run_columns_and_run_log_tables_are_left_out(tmp_path):
    def lake(root: Path, run_id: str) -> Path:
        write_deltalake(str(root / "gold" / "t"), pa.table({"k": [1], "run_id": [run_id]}))
        write_deltalake(str(root / "meta" / "runs"), pa.table({"step": [run_id]}))
        return root

    assert compare_lakes(lake(tmp_path / "a", "r1"), lake(tmp_path / "b", "r2")) == []


def test_map_entries_compare_in_any_order(tmp_path):
    kind = pa.map_(pa.string(), pa.float64())

    def lake(root: Path, entries: list) -> Path:
        data = pa.table({"member_id": ["m1"], "shares": pa.array([entries], kind)})
        write_deltalake(str(root / "gold" / "member_features"), data)
        return root

    sail = lake(tmp_path / "a", [("生鲜", 0.25), ("母婴", 0.75)])
    assert compare_lakes(sail, lake(tmp_path / "b", [("母婴", 0.75), ("生鲜", 0.25)])) == []
    assert compare_lakes(sail, lake(tmp_path / "c", [("母婴", 0.5), ("生鲜", 0.5)]))


def test_exports_compare_rows_in_any_order_and_manifest_counts(tmp_path):
    def exports(root: Path, lines: list[str], rows: int) -> Path:
        day = root / "2026-11-20"
        day.mkdir(parents=True)
        (day / "vip.csv").write_text("member_id\n" + "\n".join(lines) + "\n", encoding="utf-8")
        manifest = {"files": [{"path": "vip.csv", "rows": rows, "sha256": str(root)}]}
        (day / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        return root

    first = exports(tmp_path / "a", ["m1", "m2"], 2)
    assert compare_exports(first, exports(tmp_path / "b", ["m2", "m1"], 2)) == []
    assert compare_exports(first, exports(tmp_path / "c", ["m2", "m3"], 2))
    assert compare_exports(first, exports(tmp_path / "d", ["m1", "m2"], 3))
