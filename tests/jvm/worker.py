"""One JVM SparkSession (Apache Spark + Delta) for every JVM test of a pytest process.

A JVM session takes 10-30 s to start, and a process holds either Spark Connect
sessions (Sail) or classic PySpark ones, not both: so the JVM tests do not start a
``cdp`` process (and a JVM) per command, nor a JVM inside pytest. They send their
commands to one *worker*: a Python interpreter started once per test session
(tests/jvm/conftest.py) that holds a local JVM session (``CDP_ENGINE=spark``) and runs,
one at a time, ``cdp`` commands (as :func:`jobs.cli.main` would, minus the final
``engine.stop()``) or Python scripts (as ``python -c``).

Protocol: one JSON request per line on the worker's stdin, one JSON answer per line
on its stdout (the commands' own output is captured and returned in the answer).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import psutil

from jobs.config import PROJECT_ROOT
from tests.jvm.conf import SHORT_JVM_OPTIONS

CONNECT_FLAGS = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")


def _run_request(request: dict[str, Any]) -> dict[str, Any]:
    """Run one ``cdp`` command or script under the request's environment and folder."""
    from jobs import cli

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    os.environ.clear()
    # The test process may hold a Spark Connect session (Sail): its flags would turn
    # this process's pyspark functions into Connect ones.
    os.environ.update({k: v for k, v in request["env"].items() if k not in CONNECT_FLAGS})
    os.chdir(request.get("cwd") or PROJECT_ROOT)
    out = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if "script" in request:
                sys.argv = ["-c", *request["argv"]]
                try:
                    exec(compile(request["script"], "<script>", "exec"), {"__name__": "__main__"})
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except Exception:  # noqa: BLE001 - reported to the test as the script's failure
                    traceback.print_exc()
                    code = 1
            else:
                code = cli._invoke(request["argv"])
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
    return {"rc": code, "output": out.getvalue()}


def serve() -> None:
    """The worker's loop: start the JVM session, then answer requests until stdin ends."""
    import logging

    from jobs import engine
    from jobs.config import load_settings
    from tests.jvm.conf import TINY_DATA_CONF

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    # Answers go to a copy of stdout; fd 1 itself becomes stderr, so neither a stray
    # print nor the JVM (which inherits fd 1) can corrupt them.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    session = engine.get_spark(load_settings(env={"CDP_ENGINE": "spark"}).engine)
    for key, value in TINY_DATA_CONF.items():  # runtime settings: kept by every command
        session.conf.set(key, value)
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        answers.write(json.dumps(_run_request(json.loads(line))) + "\n")
    engine.stop()


class JvmWorker:
    """The test side of the worker: start it, send it commands, stop it and prove no JVM is left."""

    def __init__(self, log: Path):
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in CONNECT_FLAGS and not k.startswith("CDP_")
        }
        # The session's JVM is launched by spark-submit: its options go there (conf.py).
        env["PYSPARK_SUBMIT_ARGS"] = f'--driver-java-options "{SHORT_JVM_OPTIONS}" pyspark-shell'
        self._log = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.log_path = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.jvm.worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError(f"the JVM worker did not start:\n{self.tail()}")
        self.jvm_pids = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def run(
        self,
        argv: list[str],
        env: dict[str, str],
        script: str | None = None,
        cwd: Path | None = None,
    ) -> dict[str, Any]:
        """``cdp argv`` (or ``python -c script argv``) in the worker; {"rc", "output"}."""
        request: dict[str, Any] = {"argv": argv, "env": env, "cwd": str(cwd or PROJECT_ROOT)}
        if script is not None:
            request["script"] = script
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"the JVM worker died:\n{self.tail()}")
        return json.loads(answer)

    def stop(self) -> list[int]:
        """Stop the worker; the pids of its processes still alive afterwards (none, we hope)."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        # The JVM leaves when the worker is gone (its gateway pipe closes): give it a minute,
        # then end any straggler, so that a failing test still leaves nothing behind.
        procs = []
        for pid in self.jvm_pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
        _, alive = psutil.wait_procs(procs, timeout=60)
        survivors = [p.pid for p in alive]
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        return survivors


if __name__ == "__main__":
    serve()
