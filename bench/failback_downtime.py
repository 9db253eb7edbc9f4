"""Write-unavailability of planned switches on the local lab, as one JSON document.

    python bench/failback_downtime.py [--rounds N] [--dir DIR]

A lab (PostgreSQL dc1 primary + dc2 standby behind HAProxy) is started; a client
inserts an increasing id every 10 ms through the router for the whole benchmark.
Each round is a planned failover dc1 -> dc2 then a failback dc2 -> dc1, run in-process
by the engine (as ``failback demo`` does). For every switch it records what the run
measured (``write_unavailability_s``: router fence -> writes routed) and what the client
lived through (longest gap between two acknowledged commits, failed attempts). At the
end every acknowledged id is looked up: the exit status is 1 if any is missing, or if
a run did not succeed.

Figures only; no threshold is asserted here (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from failback.config import load_topology
from failback.engine.executor import Executor
from failback.engine.starter import create_run, make_plan
from failback.lab import lab_down, lab_up
from failback.lab.probe import WriteProbe
from failback.store import Journal, open_journal

SETTLE_S = 1.0  # client writes before and after each switch, so its gaps are bounded


def _measure(report: dict[str, Any], name: str) -> float | None:
    for m in report.get("measurements", []):
        if m["name"] == name:
            return None if m["value"] is None else round(float(m["value"]), 4)
    return None


def _switch(
    kind: str, topology: Any, journal: Journal, executor: Executor, probe: WriteProbe, **opts: Any
) -> dict[str, Any]:
    service = "app"
    plan = make_plan(kind, service, topology, journal, **opts)
    started = time.time()
    run_id = create_run(executor, topology, plan, **opts)
    outcome = executor.execute(run_id)
    finished = time.time()
    time.sleep(SETTLE_S)
    report = journal.get_run(run_id).report or {}
    stats = probe.stats
    return {
        "kind": kind,
        "run_id": run_id,
        "from": plan.from_site,
        "to": plan.to_site,
        "status": outcome.status,
        "error": outcome.error,
        "run_duration_s": round(finished - started, 4),
        "write_unavailability_s": _measure(report, "write_unavailability_s"),
        "promote_s": _measure(report, "promote_s"),
        "client_longest_gap_s": round(stats.longest_gap(since=started, until=finished + 0.9), 4),
        "client_failed_writes": stats.failures_between(started, finished + 0.9),
    }


def _summary(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(present), 4), "max": round(max(present), 4)}


def run(
    rounds: int, directory: Path | None, *, endpoint: str = "router", hosts: str = "local"
) -> tuple[dict[str, Any], int]:
    own_dir = directory is None
    if own_dir:
        base = Path(tempfile.mkdtemp(prefix="fb-bench-", dir="/tmp"))
        os.chmod(base, 0o755)  # PostgreSQL runs as 'postgres' and must traverse it
        lab_dir = base / "lab"
    else:
        lab_dir = Path(directory)
    started = time.monotonic()
    info = lab_up(lab_dir, hosts=hosts)
    probe: WriteProbe | None = None
    switches: list[dict[str, Any]] = []
    try:
        topology = load_topology(info.config)
        journal = open_journal(topology.state_dir)
        executor = Executor(journal)
        dsn = info.dsn if endpoint == "pool" or not info.router_dsn else info.router_dsn
        probe = WriteProbe(dsn, interval=0.01).start()
        time.sleep(SETTLE_S)
        for _ in range(rounds):
            for kind, opts in (("failover", {"planned": True}), ("failback", {})):
                switch = _switch(kind, topology, journal, executor, probe, **opts)
                switches.append(switch)
                if switch["status"] != "succeeded":
                    break
            if switches[-1]["status"] != "succeeded":
                break
        stats = probe.stop()
        acked = stats.acked_ids()
        lost = probe.missing(acked)
    finally:
        if probe is not None:
            probe.stop()
        lab_down(lab_dir, purge=own_dir)
        if own_dir:
            os.rmdir(lab_dir.parent)

    doc = {
        "benchmark": "failback_downtime",
        "rounds": rounds,
        "client_endpoint": endpoint,
        "hosts": hosts,
        "switches": switches,
        "write_unavailability_s": {
            "run_measured": _summary([s["write_unavailability_s"] for s in switches]),
            "client_seen": _summary([s["client_longest_gap_s"] for s in switches]),
        },
        "acknowledged_writes": len(acked),
        "lost_acknowledged_writes": len(lost),
        "lost_ids": lost[:20],
        "client_failed_writes": len(stats.failures),
        "all_runs_succeeded": all(s["status"] == "succeeded" for s in switches)
        and len(switches) == 2 * rounds,
        "probe_interval_s": 0.01,
        "total_s": round(time.monotonic() - started, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    bad = bool(lost) or not doc["all_runs_succeeded"]
    return doc, 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="round trips (default 5)")
    parser.add_argument(
        "--dir", type=Path, default=None, help="lab directory (new or empty; default: a temp dir)"
    )
    parser.add_argument(
        "--endpoint", choices=("router", "pool"), default="router",
        help="where the client writes: HAProxy (router) or PgBouncer (pool)",
    )  # fmt: skip
    parser.add_argument(
        "--hosts", choices=("local", "netns"), default="local",
        help="the lab's machines: all on 127.0.0.1, or one network namespace per site "
        "reached over SSH",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    doc, code = run(args.rounds, args.dir, endpoint=args.endpoint, hosts=args.hosts)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
