"""Stops a Spark daemon's process group when the process that owns it dies.

The daemons of jobs.spark_cluster run in their own process groups so that they outlive
a shell or an Airflow task (``cdp engine serve-spark``). A daemon started for one
process only (a test fixture, a one-off run) is given ``owner_pid``: this watchdog, a
small detached Python process, then checks every ``--every`` seconds and

* ends (SIGTERM, SIGKILL after a grace) the daemon's group once the owner is gone,
  however it went (SIGKILL, a crash, a killed pytest worker), so no JVM is left behind;
* exits by itself once the group is gone (the owner stopped it the normal way).

    python -m jobs.spark_watchdog --owner PID --group PGID [--every SECONDS]
"""

from __future__ import annotations

import argparse
import time

from jobs.processes import alive, group_alive, kill_group


def watch(owner: int, group: int, every_s: float = 1.0) -> str:
    """Wait until the owner or the group is gone; returns what happened."""
    while group_alive(group):
        if not alive(owner):
            kill_group(group)
            return "owner gone: group stopped"
        time.sleep(every_s)
    return "group gone"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.spark_watchdog")
    parser.add_argument("--owner", type=int, required=True, help="the pid that owns the daemon")
    parser.add_argument("--group", type=int, required=True, help="the daemon's process group")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between checks")
    args = parser.parse_args(argv)
    watch(args.owner, args.group, args.every)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
