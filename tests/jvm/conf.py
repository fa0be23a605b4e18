"""Spark settings of the JVM engines the tests start (the JVM worker's session, the
Connect servers of tests/jvm/test_cluster.py).

The tests' lakes hold a few dozen rows per table, so what a JVM query costs there is
planning, scheduling and compiling, not rows. Spark compiles Java for every new plan
shape (whole-stage code generation, Janino) and a night runs a few hundred of them, each
once: measured on a standalone cluster with two workers at a load of ~7 (30 members x 6
days, ``bench/count_queries.py`` against the server), the first run took 457 s with code
generation and 368 s without it, the night after 357 s and 261 s. On real data code
generation pays for itself: these settings are for the tests only (same results either
way: the interpreted and generated paths are Spark's two implementations of one
expression semantics).
"""

from __future__ import annotations

# JVMs that live for one test: the client compiler only (no C2 compiles of code that will
# not run long enough to pay them back) and one garbage-collector thread.
SHORT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

TINY_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    # Expressions evaluated by the interpreter, not compiled one by one either.
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}

# A Connect server's JVMs (driver and executors) start with SHORT_JVM_OPTIONS; the JVM
# worker's session gets them through spark-submit (tests/jvm/worker.py), TINY_DATA_CONF
# once started. Measured alone on a quiet machine, the cluster test (night 1 on a
# Connect server over two workers) took 272 s wall and 450 s of CPU without these JVM
# options, 271 s and 331 s with them: the same wall, a quarter less CPU for the other
# pytest worker that shares the two cores in `make test`.
TINY_SERVER_CONF = {
    **TINY_DATA_CONF,
    "spark.driver.extraJavaOptions": SHORT_JVM_OPTIONS,
    "spark.executor.extraJavaOptions": SHORT_JVM_OPTIONS,
}
