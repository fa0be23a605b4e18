"""Parity: one scenario on Sail and on a local JVM Apache Spark 4.1 + delta-spark 4.1.

A generated landing zone (CDP_PARITY_MEMBERS x CDP_PARITY_DAYS, default 200 x 10) is
copied once per engine; the same changes are planted in both copies between nights,
and every step goes through the ``cdp`` command line, as an operator would run it,
the two engines side by side: on Sail a fresh ``cdp`` process per command
(``CDP_ENGINE=sail``), on the JVM the same command in the test session's JVM worker
(``CDP_ENGINE=spark``, one JVM for all JVM tests: tests/jvm/worker.py). The scenario:

1. night D-2 (the first load), with one POS day folder held back;
2. night D-1: the held-back day arrives late, a POS file of an earlier day is re-sent
   (one line fewer), a till line ties one member's card to another's phone (a merge),
   and a CRM correction gives one of two members who shared a phone their own (a
   split);
3. ``cdp forget --crm-id`` of a third member, then night D;
4. night D again through the Airflow DAG's task callables (a rerun);
5. night D-1 again (a backfill);
6. ``cdp sql`` and ``cdp maintain`` (delta-rs on Sail, Delta SQL on the JVM).

After each of 1 to 6 every table of the two lakes (bronze, quarantine, silver, gold,
restricted and the incremental state) must hold the same rows, silver/members the same
member ids, and the exports the same rows (tests/jvm/lakes.py, which reads both
sides with delta-rs/pyarrow). Ignored, because they say when or in which run a row
was written rather than what it holds:

* ``run_id`` / ``_run_id``: the pipeline run that wrote the row (a fresh id per run);
* ``_ingested_at`` / ``ingested_at``: the time ingest stamped the row or the file;
* ``validated_at``: the time the quality step ran (meta/quality_results);
* the table ``meta/runs``: the run log itself (step timings and start/finish times);
* ``meta/identity_state`` and ``meta/silver_orders_state``: one row whose ``detail``
  JSON holds step timings and per-date digests built from ``_ingested_at``;
* export manifests: they hold file checksums (row order in a file is the engine's
  business) and write times; the exported rows themselves are compared.

Doubles are compared within a relative 1e-9 (a sum taken in another order differs in
the last bits). Nothing else is normalised: a difference is fixed in the job code.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.config import PROJECT_ROOT
from tests.jvm.lakes import compare_exports, compare_lakes, compared_rows
from tests.jvm.worker import JvmWorker
from tests.reliability.cli import cdp_env

pytestmark = [
    pytest.mark.jvm,
    pytest.mark.slow,
    pytest.mark.timeout(5400),
    # Opt-in (`make test-jvm`): it passed whole on 2026-11-30 (44 tables, 9,529 rows equal
    # after every stage) in 1,494 s at a load of ~2.5, the JVM's side 1,462 s against
    # Sail's 209 s, most of `make test`'s 20-minute budget (docs/scaling.md: a JVM night
    # costs its number of queries and commits).
    pytest.mark.skipif(
        os.environ.get("CDP_TEST_CLUSTER") != "1",
        reason="the Sail vs JVM Spark parity run is opt-in: CDP_TEST_CLUSTER=1 (make test-jvm)",
    ),
]

ENGINES = ("sail", "spark")
MEMBERS = int(os.environ.get("CDP_PARITY_MEMBERS", "200"))
DAYS = int(os.environ.get("CDP_PARITY_DAYS", "10"))
END = dt.date(2026, 11, 20)
NIGHTS = [END - dt.timedelta(days=2), END - dt.timedelta(days=1), END]
FIRST = END - dt.timedelta(days=DAYS - 1)
LATE_DAY = FIRST + dt.timedelta(days=2)  # POS folder held back until night 2
RESENT_DAY = FIRST + dt.timedelta(days=1)  # a POS file of it is re-sent before night 2
PLANTED_MTIME_NS = 1_763_000_000_000_000_000  # planted files get one mtime in both copies
SPLIT_PHONES = ("13799990001", "13799990002")

# Rerun of a night as Airflow runs it: one task callable per step, in the DAG's order.
DAG_TASKS = """
import sys, types
from jobs.orchestration.tasks import run_pipeline_step
from jobs.pipeline import STEPS
run = types.SimpleNamespace(conf={"business_date": sys.argv[1]}, run_id="manual__parity",
                            dag_id="cdp_nightly", run_after=None)
for step in STEPS:
    run_pipeline_step(step.name, dag_run=run, logical_date=None)
"""


def ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _csv_lines(path: Path) -> tuple[list[str], str]:
    """Lines of a landing CSV (either encoding) and its line ending."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    newline = "\r\n" if "\r\n" in text else "\n"
    return text.splitlines(), newline


def _touch(path: Path) -> None:
    os.utime(path, ns=(PLANTED_MTIME_NS, PLANTED_MTIME_NS))


def _append_ascii(path: Path, lines: list[str]) -> None:
    """Append ASCII lines to a CSV (ASCII reads the same in UTF-8 and GB18030)."""
    _, newline = _csv_lines(path)
    raw = path.read_bytes()
    sep = b"" if raw.endswith(b"\n") else newline.encode()
    path.write_bytes(raw + sep + newline.join(lines).encode("ascii") + newline.encode())
    _touch(path)


def crm_line(crm_id: str, phone: str, updated: str) -> str:
    return f"{crm_id},,{phone},,,,,,,,,2025-01-01 10:00:00,store,,N,N,N,active,{updated}"


def may_merge(a: dict[str, str], b: dict[str, str]) -> bool:
    """True when the never-link rules (conf/identity.yaml) let a till receipt merge two CRM
    rows: not two ID cards, not different genders with different birth dates."""
    two_cards = bool(a["id_card_no"] and b["id_card_no"])
    strangers = a["gender"] != b["gender"] and a["birth_date"] != b["birth_date"]
    return not two_cards and not strangers


def pick_members(landing: Path) -> dict[str, dict[str, str]]:
    """Three members of the first CRM snapshot with a card and a phone: A and B (to merge,
    so a pair the never-link rules allow) and E (to erase)."""
    path = next((landing / "crm" / FIRST.isoformat()).glob("members_*.csv"))
    lines, _ = _csv_lines(path)
    rows = [r for r in csv.DictReader(lines) if r["member_card_no"] and r["phone"]]
    phones = [r["phone"] for r in rows]
    rows = [r for r in rows if phones.count(r["phone"]) == 1 and len(r["phone"]) == 11]
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :] if may_merge(a, b)]
    assert pairs, "the generated CRM snapshot has no two members a receipt may merge"
    a, b = pairs[0]
    erased = next(r for r in rows if r is not a and r is not b)
    return {"A": a, "B": b, "E": erased}


def plant_before_night1(landing: Path, hold: Path) -> None:
    """C and D share a phone (one member until D's correction); the late day goes away."""
    first_crm = next((landing / "crm" / FIRST.isoformat()).glob("members_*.csv"))
    _append_ascii(
        first_crm,
        [
            crm_line("PARITY-C", SPLIT_PHONES[0], f"{FIRST} 09:00:00"),
            crm_line("PARITY-D", SPLIT_PHONES[0], f"{FIRST} 09:05:00"),
        ],
    )
    shutil.move(landing / "pos" / LATE_DAY.isoformat(), hold / LATE_DAY.isoformat())


def plant_before_night2(landing: Path, hold: Path, people: dict[str, dict[str, str]]) -> None:
    """The late day arrives, a file is re-sent, a merge and a split are planted."""
    shutil.move(hold / LATE_DAY.isoformat(), landing / "pos" / LATE_DAY.isoformat())
    resent = sorted((landing / "pos" / RESENT_DAY.isoformat()).glob("pos_*.csv"))[0]
    lines, newline = _csv_lines(resent)
    resent.write_bytes((newline.join(lines[:-1]) + newline).encode("utf-8"))
    _touch(resent)
    night2 = NIGHTS[1]
    till = landing / "pos" / night2.isoformat() / f"pos_S900_{ymd(night2)}.csv"
    header, _ = _csv_lines(next((landing / "pos" / night2.isoformat()).glob("pos_*.csv")))
    a, b = people["A"], people["B"]
    till.write_text(
        f"{header[0]}\nPARITY-M1,1,S900,{night2} 12:00:00,SALE,,{a['member_card_no']},"
        f"{b['phone']},SKU1,生鲜,1,10.00,0,10.00,cash,,\n",
        encoding="utf-8",
    )
    _touch(till)
    crm = landing / "crm" / night2.isoformat() / f"members_{ymd(night2)}.csv"
    if not crm.exists():
        crm.write_text(
            "crm_id,member_card_no,phone,email,id_card_no,web_user_id,name,gender,birth_date,"
            "province,city,register_ts,register_channel,home_store_id,opt_in_sms,opt_in_email,"
            "opt_in_push,status,updated_ts\n",
            encoding="utf-8",
        )
    _append_ascii(crm, [crm_line("PARITY-D", SPLIT_PHONES[1], f"{night2} 09:00:00")])


def run_cdp(engine: str, base: Path, args: list[str], script: str | None, jvm: JvmWorker) -> float:
    """``cdp <args>`` (or ``python -c script args``) on ``engine``; its wall seconds.
    ``{base}`` in an argument is the engine's base folder. Sail: a fresh process; the
    JVM: the JVM worker."""
    env = cdp_env(base, CDP_ENGINE=engine, RUST_LOG="error")
    args = [a.replace("{base}", str(base)) for a in args]
    t0 = time.perf_counter()
    if engine == "spark":
        answer = jvm.run(args, env, script=script)
        code, output = answer["rc"], answer["output"]
    else:
        cmd = [sys.executable, *(["-c", script] if script else ["-m", "jobs.cli"]), *args]
        proc = subprocess.run(
            cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1800
        )
        code, output = proc.returncode, proc.stdout[-2000:] + proc.stderr
    assert code == 0, f"{engine}: {' '.join(args)}\n{output[-5000:]}"
    return time.perf_counter() - t0


class Scenario:
    """One base folder per engine (landing copy, lake, exports, work) and their timings."""

    def __init__(self, root: Path, zone: Path, jvm: JvmWorker):
        self.jvm = jvm
        self.bases = {e: root / e for e in ENGINES}
        self.hold = {e: root / f"{e}-hold" for e in ENGINES}
        self.seconds = {e: 0.0 for e in ENGINES}
        for engine, base in self.bases.items():
            shutil.copytree(zone, base / "landing")
            self.hold[engine].mkdir()

    def both(self, args: list[str], script: str | None = None) -> None:
        """The same command on both engines, side by side."""
        with ThreadPoolExecutor(len(ENGINES)) as pool:
            futures = {
                e: pool.submit(run_cdp, e, self.bases[e], args, script, self.jvm) for e in ENGINES
            }
            for engine, future in futures.items():
                self.seconds[engine] += future.result()

    def lake(self, engine: str) -> Path:
        return self.bases[engine] / "lake"

    def assert_same(self, moment: str) -> None:
        problems = compare_lakes(self.lake("sail"), self.lake("spark"))
        problems += compare_exports(self.bases["sail"] / "exports", self.bases["spark"] / "exports")
        assert problems == [], f"{moment}: Sail and JVM Spark differ:\n" + "\n".join(problems[:40])
        ids = {e: _member_ids(self.lake(e)) for e in ENGINES}
        assert ids["sail"] == ids["spark"] and ids["sail"], moment


def _member_ids(lake: Path) -> set[str]:
    return {r["member_id"] for r in _rows(lake, "silver/members")}


def _rows(lake: Path, name: str) -> list[dict]:
    return DeltaTable(str(lake / name)).to_pyarrow_table().to_pylist()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, jvm: JvmWorker) -> Scenario:
    from jobs.generate.landing import generate_landing

    zone = tmp_path_factory.mktemp("zone") / "landing"
    generate_landing(zone, members=MEMBERS, days=DAYS, seed=11, end_date=END, workers=1)
    return Scenario(tmp_path_factory.mktemp("parity"), zone, jvm)


def test_sail_and_jvm_spark_build_the_same_lake(scenario: Scenario) -> None:
    s = scenario
    people = pick_members(s.bases["sail"] / "landing")
    for engine in ENGINES:
        plant_before_night1(s.bases[engine] / "landing", s.hold[engine])
    s.both(["run", "--date", NIGHTS[0].isoformat()])
    s.assert_same("night 1 (first load, one day held back)")

    for engine in ENGINES:
        plant_before_night2(s.bases[engine] / "landing", s.hold[engine], people)
    s.both(["run", "--date", NIGHTS[1].isoformat()])
    s.assert_same("night 2 (late day, re-sent file, merge, split)")
    # The scenario did what it says, on both engines.
    for engine in ENGINES:
        changes = _rows(s.lake(engine), "silver/member_id_changes")
        kinds = {c["change_type"] for c in changes if c["as_of_date"] == NIGHTS[1]}
        assert {"merge", "split"} <= kinds, (engine, kinds)
        files = {r["_source_file"] for r in _rows(s.lake(engine), "meta/ingest_manifest")}
        assert any(f.startswith(f"pos/{LATE_DAY}/") for f in files), engine

    s.both(["forget", "--crm-id", people["E"]["crm_id"]])
    s.both(["run", "--date", NIGHTS[2].isoformat()])
    s.assert_same("night 3 after an erasure")
    for engine in ENGINES:
        crm_ids = {r["crm_id"] for r in _rows(s.lake(engine), "bronze/crm_members")}
        assert people["E"]["crm_id"] not in crm_ids and people["A"]["crm_id"] in crm_ids

    s.both([NIGHTS[2].isoformat()], script=DAG_TASKS)
    s.assert_same("rerun of night 3 through the DAG's tasks")

    s.both(["run", "--date", NIGHTS[1].isoformat()])
    s.assert_same("backfill of night 2")

    query = "SELECT rfm_segment, count(*) AS n FROM gold.member_rfm GROUP BY rfm_segment"
    s.both(["sql", query, "--format", "csv", "--out", "{base}/sql/segments.csv"])
    got = {e: table_rows_csv(s.bases[e] / "sql/segments.csv") for e in ENGINES}
    assert got["sail"] == got["spark"] and got["sail"]

    s.both(["maintain"])
    s.assert_same("after cdp maintain")
    scope = compared_rows(s.lake("sail"))
    print(
        f"\nparity {MEMBERS} members x {DAYS} days, seconds per engine: "
        + json.dumps({e: round(v, 1) for e, v in s.seconds.items()})
        + f"; {len(scope)} tables, {sum(scope.values())} rows compared: {json.dumps(scope)}"
    )


def table_rows_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return sorted(csv.reader(fh))
