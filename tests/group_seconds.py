"""Seconds per test group from a JUnit XML report, to refresh ``GROUP_SECONDS`` in conftest.py.

    make test PYTEST_ARGS=--junitxml=var/tests.xml
    .venv/bin/python tests/group_seconds.py var/tests.xml

A group is what one xdist worker runs whole (conftest.xdist_group_of): a module, or all
JVM tests together. Prints the groups over ``--min`` seconds, longest first, as the dict.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import xdist_group_of  # noqa: E402


def group_seconds(report: Path) -> Counter:
    """{group: seconds} summed over the report's test cases (setup and teardown included)."""
    seconds: Counter = Counter()
    for case in ElementTree.parse(report).iter("testcase"):
        module = case.get("classname", "").split(".")
        # classname is tests.dir.test_mod[.Class]: the module path ends at the test_ part.
        cut = next((i for i, part in enumerate(module) if part.startswith("test_")), len(module) - 1)
        path = "/".join(module[: cut + 1]) + ".py"
        seconds[xdist_group_of(path)] += float(case.get("time", 0))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--min", type=float, default=30.0, help="leave out shorter groups")
    args = parser.parse_args()
    seconds = group_seconds(args.report)
    print(f"# {sum(seconds.values()):,.0f} s in {len(seconds)} groups")
    print("GROUP_SECONDS = {")
    for group, s in seconds.most_common():
        if s >= args.min:
            print(f'    "{group}": {round(s)},')
    print("}")


if __name__ == "__main__":
    main()
