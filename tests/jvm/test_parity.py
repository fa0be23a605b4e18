"""Parity: one scenario on Sail and on a local JVM Apache Spark 4.1 + delta-spark 4.1.

A generated landing zone (CDP_PARITY_MEMBERS x CDP_PARITY_DAYS, default 200 x 10) is
copied once per engine; the same changes are planted in both copies between nights,
and every step goes through the ``cdp`` command line, as an operator would run it,
the two engines side by side: on Sail a fresh ``cdp`` process per command
(``CDP_ENGINE=sail``), on the JVM the same command in the test session's JVM worker
(``CDP_ENGINE=spark``, one JVM for all JVM tests: tests/jvm/worker.py). The scenario
(tests/jvm/scenario.py; its first two nights also run in ``make test`` through a Spark
Connect server on a standalone cluster, tests/jvm/test_cluster.py):

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

import datetime as dt
import json
import os

import pytest

from tests.jvm.lakes import compared_rows
from tests.jvm.scenario import Calendar, JvmSide, Scenario
from tests.jvm.worker import JvmWorker

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

MEMBERS = int(os.environ.get("CDP_PARITY_MEMBERS", "200"))
CAL = Calendar(end=dt.date(2026, 11, 20), days=int(os.environ.get("CDP_PARITY_DAYS", "10")))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, jvm: JvmWorker) -> Scenario:
    from jobs.generate.landing import generate_landing

    zone = tmp_path_factory.mktemp("zone") / "landing"
    generate_landing(zone, members=MEMBERS, days=CAL.days, seed=11, end_date=CAL.end, workers=1)
    return Scenario(tmp_path_factory.mktemp("parity"), zone, CAL, JvmSide("spark", jvm=jvm))


def test_sail_and_jvm_spark_build_the_same_lake(scenario: Scenario) -> None:
    s = scenario
    s.night1()
    s.night2()
    s.after_night2()
    scope = compared_rows(s.lake("sail"))
    print(
        f"\nparity {MEMBERS} members x {CAL.days} days, seconds per engine: "
        + json.dumps({e: round(v, 1) for e, v in s.seconds.items()})
        + f"; {len(scope)} tables, {sum(scope.values())} rows compared: {json.dumps(scope)}"
    )
