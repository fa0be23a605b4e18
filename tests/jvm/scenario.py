"""The parity scenario, shared by the JVM tests: one landing zone, copied once per engine,
the same changes planted in both copies between nights, the same ``cdp`` commands run on
Sail and on a JVM engine side by side, and both lakes compared after each stage.

* :class:`Calendar`: the scenario's dates for a zone of ``days`` days ending on ``end``.
* ``plant_before_night1`` / ``plant_before_night2``: the changes an operator would see
  (a held-back POS day that arrives late, a re-sent file, a till line that merges two
  members, a CRM correction that splits two).
* :class:`Scenario`: runs a command on both engines and asserts the lakes are equal
  (tests/jvm/lakes.py). The JVM side is either the local JVM session of the test
  process's worker (``CDP_ENGINE=spark``, tests/jvm/worker.py) or a Spark Connect server
  (``CDP_ENGINE=connect``, a fresh ``cdp`` process per command, as an Airflow worker).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from jobs.config import PROJECT_ROOT
from jobs.lake import delta_arrow
from tests.jvm.lakes import compare_exports, compare_lakes
from tests.jvm.worker import JvmWorker
from tests.reliability.cli import cdp_env

PLANTED_MTIME_NS = 1_763_000_000_000_000_000  # planted files get one mtime in both copies
SPLIT_PHONES = ("13799990001", "13799990002")


@dataclass(frozen=True)
class Calendar:
    """The dates of a scenario over a zone of ``days`` days (at least 6) ending on ``end``."""

    end: dt.date
    days: int

    @property
    def first(self) -> dt.date:
        return self.end - dt.timedelta(days=self.days - 1)

    @property
    def nights(self) -> list[dt.date]:
        return [self.end - dt.timedelta(days=2), self.end - dt.timedelta(days=1), self.end]

    @property
    def late_day(self) -> dt.date:
        """A POS day folder held back until night 2."""
        return self.first + dt.timedelta(days=2)

    @property
    def resent_day(self) -> dt.date:
        """A day one POS file of which is re-sent (one line fewer) before night 2."""
        return self.first + dt.timedelta(days=1)


def ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def csv_lines(path: Path) -> tuple[list[str], str]:
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
    _, newline = csv_lines(path)
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


def pick_members(landing: Path, cal: Calendar) -> dict[str, dict[str, str]]:
    """Three members of the first CRM snapshot with a card and a phone: A and B (to merge,
    so a pair the never-link rules allow) and E (to erase)."""
    path = next((landing / "crm" / cal.first.isoformat()).glob("members_*.csv"))
    lines, _ = csv_lines(path)
    rows = [r for r in csv.DictReader(lines) if r["member_card_no"] and r["phone"]]
    phones = [r["phone"] for r in rows]
    rows = [r for r in rows if phones.count(r["phone"]) == 1 and len(r["phone"]) == 11]
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :] if may_merge(a, b)]
    assert pairs, "the generated CRM snapshot has no two members a receipt may merge"
    a, b = pairs[0]
    erased = next(r for r in rows if r is not a and r is not b)
    return {"A": a, "B": b, "E": erased}


def plant_before_night1(landing: Path, hold: Path, cal: Calendar) -> None:
    """C and D share a phone (one member until D's correction); the late day goes away."""
    first_crm = next((landing / "crm" / cal.first.isoformat()).glob("members_*.csv"))
    _append_ascii(
        first_crm,
        [
            crm_line("PARITY-C", SPLIT_PHONES[0], f"{cal.first} 09:00:00"),
            crm_line("PARITY-D", SPLIT_PHONES[0], f"{cal.first} 09:05:00"),
        ],
    )
    shutil.move(landing / "pos" / cal.late_day.isoformat(), hold / cal.late_day.isoformat())


def _resend_one_line_fewer(landing: Path, cal: Calendar) -> None:
    resent = sorted((landing / "pos" / cal.resent_day.isoformat()).glob("pos_*.csv"))[0]
    lines, newline = csv_lines(resent)
    resent.write_bytes((newline.join(lines[:-1]) + newline).encode("utf-8"))
    _touch(resent)


def _till_line_merging(landing: Path, night: dt.date, a: dict, b: dict) -> None:
    """A receipt with A's card and B's phone."""
    till = landing / "pos" / night.isoformat() / f"pos_S900_{ymd(night)}.csv"
    header, _ = csv_lines(next((landing / "pos" / night.isoformat()).glob("pos_*.csv")))
    till.write_text(
        f"{header[0]}\nPARITY-M1,1,S900,{night} 12:00:00,SALE,,{a['member_card_no']},"
        f"{b['phone']},SKU1,生鲜,1,10.00,0,10.00,cash,,\n",
        encoding="utf-8",
    )
    _touch(till)


def plant_before_night2(
    landing: Path, hold: Path, people: dict[str, dict[str, str]], cal: Calendar
) -> None:
    """The late day arrives, a file is re-sent, a merge and a split are planted."""
    shutil.move(hold / cal.late_day.isoformat(), landing / "pos" / cal.late_day.isoformat())
    _resend_one_line_fewer(landing, cal)
    night2 = cal.nights[1]
    _till_line_merging(landing, night2, people["A"], people["B"])
    crm = landing / "crm" / night2.isoformat() / f"members_{ymd(night2)}.csv"
    if not crm.exists():
        crm.write_text(
            "crm_id,member_card_no,phone,email,id_card_no,web_user_id,name,gender,birth_date,"
            "province,city,register_ts,register_channel,home_store_id,opt_in_sms,opt_in_email,"
            "opt_in_push,status,updated_ts\n",
            encoding="utf-8",
        )
    _append_ascii(crm, [crm_line("PARITY-D", SPLIT_PHONES[1], f"{night2} 09:00:00")])


@dataclass
class JvmSide:
    """Where the JVM engine's commands run: the local JVM worker (``spark``) or a Spark
    Connect server at ``url`` (``connect``)."""

    engine: str
    jvm: JvmWorker | None = None
    url: str | None = None


def run_cdp(engine: str, base: Path, args: list[str], script: str | None, side: JvmSide) -> float:
    """``cdp <args>`` (or ``python -c script args``) on ``engine``; its wall seconds.
    ``{base}`` in an argument is the engine's base folder. Sail and Connect: a fresh
    process; the local JVM: the JVM worker."""
    env = cdp_env(base, CDP_ENGINE=engine, RUST_LOG="error", CDP_CONNECT_URL=side.url)
    args = [a.replace("{base}", str(base)) for a in args]
    t0 = time.perf_counter()
    if engine == "spark":
        answer = side.jvm.run(args, env, script=script)
        code, output = answer["rc"], answer["output"]
    else:
        cmd = [sys.executable, *(["-c", script] if script else ["-m", "jobs.cli"]), *args]
        proc = subprocess.run(
            cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=3000
        )
        code, output = proc.returncode, proc.stdout[-2000:] + proc.stderr
    assert code == 0, f"{engine}: {' '.join(args)}\n{output[-5000:]}"
    return time.perf_counter() - t0


# A rerun of a night as Airflow runs it: one task callable per step, in the DAG's order.
DAG_TASKS = """
import sys, types
from jobs.orchestration.tasks import run_pipeline_step
from jobs.pipeline import STEPS
run = types.SimpleNamespace(conf={"business_date": sys.argv[1]}, run_id="manual__parity",
                            dag_id="cdp_nightly", run_after=None)
for step in STEPS:
    run_pipeline_step(step.name, dag_run=run, logical_date=None)
"""


def csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return sorted(csv.reader(fh))


def table_rows(lake: Path, name: str) -> list[dict]:
    return delta_arrow(str(lake / name)).to_pylist()


class Scenario:
    """One base folder per engine (landing copy, lake, exports, work) and their timings."""

    def __init__(self, root: Path, zone: Path, cal: Calendar, side: JvmSide):
        self.cal, self.side = cal, side
        self.engines = ("sail", side.engine)
        self.bases = {e: root / e for e in self.engines}
        self.hold = {e: root / f"{e}-hold" for e in self.engines}
        self.seconds = {e: 0.0 for e in self.engines}
        for engine, base in self.bases.items():
            shutil.copytree(zone, base / "landing")
            self.hold[engine].mkdir()
        self.people = pick_members(self.bases["sail"] / "landing", cal)

    def both(self, args: list[str], script: str | None = None) -> None:
        """The same command on both engines, side by side."""
        with ThreadPoolExecutor(2) as pool:
            futures = {
                e: pool.submit(run_cdp, e, self.bases[e], args, script, self.side)
                for e in self.engines
            }
            for engine, future in futures.items():
                self.seconds[engine] += future.result()

    def lake(self, engine: str) -> Path:
        return self.bases[engine] / "lake"

    def assert_same(self, moment: str) -> None:
        sail, jvm = self.engines
        problems = compare_lakes(self.lake(sail), self.lake(jvm))
        problems += compare_exports(self.bases[sail] / "exports", self.bases[jvm] / "exports")
        assert problems == [], f"{moment}: Sail and {jvm} differ:\n" + "\n".join(problems[:40])
        ids = {
            e: {r["member_id"] for r in table_rows(self.lake(e), "silver/members")}
            for e in self.engines
        }
        assert ids[sail] == ids[jvm] and ids[sail], moment

    def night1(self) -> None:
        """Night 1: the first load, C and D sharing a phone, a POS day held back."""
        for engine in self.engines:
            plant_before_night1(self.bases[engine] / "landing", self.hold[engine], self.cal)
        self.both(["run", "--date", self.cal.nights[0].isoformat()])
        self.assert_same("night 1 (first load, one day held back)")

    def night2(self) -> None:
        """Night 2: the late day, a re-sent file, a merge and a split; then that the night
        did what it says on both engines."""
        for engine in self.engines:
            plant_before_night2(
                self.bases[engine] / "landing", self.hold[engine], self.people, self.cal
            )
        self.both(["run", "--date", self.cal.nights[1].isoformat()])
        self.assert_same("night 2 (late day, re-sent file, merge, split)")
        for engine in self.engines:
            changes = table_rows(self.lake(engine), "silver/member_id_changes")
            kinds = {c["change_type"] for c in changes if c["as_of_date"] == self.cal.nights[1]}
            assert {"merge", "split"} <= kinds, (engine, kinds)
            manifest = table_rows(self.lake(engine), "meta/ingest_manifest")
            late = f"pos/{self.cal.late_day}/"
            assert any(r["_source_file"].startswith(late) for r in manifest), engine

    def after_night2(self) -> None:
        """Stages 3-6, compared after each: ``cdp forget`` of a third member then night 3;
        night 3 again through the DAG's task callables (a rerun); night 2 again (a
        backfill); ``cdp sql`` and ``cdp maintain``."""
        night2, night3 = self.cal.nights[1], self.cal.nights[2]
        self.both(["forget", "--crm-id", self.people["E"]["crm_id"]])
        self.both(["run", "--date", night3.isoformat()])
        self.assert_same("night 3 after an erasure")
        for engine in self.engines:
            crm_ids = {r["crm_id"] for r in table_rows(self.lake(engine), "bronze/crm_members")}
            assert self.people["E"]["crm_id"] not in crm_ids, engine
            assert self.people["A"]["crm_id"] in crm_ids, engine
        self.both([night3.isoformat()], script=DAG_TASKS)
        self.assert_same("rerun of night 3 through the DAG's tasks")
        self.both(["run", "--date", night2.isoformat()])
        self.assert_same("backfill of night 2")
        query = "SELECT rfm_segment, count(*) AS n FROM gold.member_rfm GROUP BY rfm_segment"
        self.both(["sql", query, "--format", "csv", "--out", "{base}/sql/segments.csv"])
        got = [csv_rows(self.bases[e] / "sql/segments.csv") for e in self.engines]
        assert got[0] == got[1] and got[0], got
        self.both(["maintain"])
        self.assert_same("after cdp maintain")
