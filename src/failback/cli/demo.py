"""`failback demo`: the whole story on a local lab in well under two minutes.

Lab up; a client writes every 10 ms through the router; dc1's postmaster is killed;
failover to dc2; dc1 is repaired and comes back as a stale primary (fenced); failback
to dc1 with zero lost acknowledged writes; a report of what was measured.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.table import Table

from failback.cli.output import emit_json, fmt_duration, report_table, stderr, stdout
from failback.cli.progress import TerminalReporter
from failback.config import load_topology
from failback.config.journal import journal_for
from failback.engine.executor import Executor
from failback.engine.starter import create_run, make_plan
from failback.errors import FailbackError
from failback.lab import lab_break, lab_down, lab_repair, lab_up
from failback.lab.probe import WriteProbe
from failback.observe.service import observe_service_once, record_primary_position
from failback.store import Journal


def _say(message: str, as_json: bool) -> None:
    if not as_json:
        stderr.print(f"[bold cyan]==>[/] {message}")


def _measure(report: dict[str, Any], name: str) -> float | None:
    for m in report.get("measurements", []):
        if m["name"] == name:
            return m["value"]
    return None


def _run(
    kind: str, service: str, topology: Any, journal: Journal, executor: Executor, **options: Any
) -> dict[str, Any]:
    plan = make_plan(kind, service, topology, journal, **options)
    run_id = create_run(executor, topology, plan, **options)
    outcome = executor.execute(run_id)
    report = journal.get_run(run_id).report or {}
    if outcome.status != "succeeded":
        raise FailbackError(
            f"demo {kind} run {run_id} {outcome.status}: {outcome.error}",
            hint=f"failback run show {run_id} --state-dir {journal.state_dir}",
        )
    return report


def run_demo(directory: Path | None, *, keep: bool, as_json: bool, hosts: str = "local") -> int:
    started = time.monotonic()
    lab_dir = directory or Path(tempfile.mkdtemp(prefix="failback-demo-"))
    where = (
        "each site its own machine (network namespace + sshd), reached over SSH"
        if hosts == "netns"
        else "127.0.0.1"
    )
    _say(
        f"lab up in {lab_dir}: PostgreSQL dc1 (primary) + dc2 (standby) + HAProxy + "
        f"PgBouncer, {where}",
        as_json,
    )
    what = "host" if hosts == "netns" else "db"
    info = lab_up(lab_dir, hosts=hosts)
    try:
        topology = load_topology(info.config)
        journal = journal_for(topology)
        reporter = None if as_json else TerminalReporter()
        executor = Executor(journal, reporter=reporter)
        service = info.service
        probe = WriteProbe(info.dsn, interval=0.01).start()
        _say("a client inserts an increasing id every 10 ms through PgBouncer", as_json)
        time.sleep(1.0)
        # what the monitor does every few seconds: remember dc1's last seen position
        record_primary_position(journal, observe_service_once(topology, service, journal))

        _say(
            "dc1's machine dies: every process SIGKILLed, its network link down"
            if what == "host"
            else "dc1 fails: SIGKILL of its postmaster",
            as_json,
        )
        broken_at = time.time()
        lab_break(lab_dir, "dc1", what)
        time.sleep(0.3)
        _say("failover to dc2", as_json)
        failover = _run("failover", service, topology, journal, executor)
        failover_done = time.time()
        time.sleep(1.0)

        _say("dc1 is repaired and restarts believing it is still the primary", as_json)
        lab_repair(lab_dir, "dc1", what)
        state = observe_service_once(topology, service, journal)
        dc1 = state.get("db", "dc1")
        if not as_json and dc1 is not None:
            stderr.print(f"    status of dc1: {dc1.role} — {dc1.detail}", markup=False)
        stale_seen = dc1 is not None and dc1.role == "stale-primary"

        _say("failback to dc1: resync, catch up, zero-loss switchover, re-protect", as_json)
        failback_started = time.time()
        failback = _run("failback", service, topology, journal, executor)
        time.sleep(1.0)
        stats = probe.stop()

        acked_before_failover = stats.acked_ids(until=broken_at)
        lost_failover = probe.missing(acked_before_failover)
        acked_in_failback = stats.acked_ids(since=failover_done)
        lost_failback = probe.missing(acked_in_failback)
        figures = {
            "failover_rto_s": _measure(failover, "rto_s"),
            "failover_client_gap_s": stats.outage_across(broken_at - 0.2, failover_done),
            "failover_possible_loss_bytes": _measure(failover, "possible_loss_bytes"),
            "failover_lost_acknowledged_writes": len(lost_failover),
            "stale_primary_fenced": stale_seen,
            "failback_write_unavailability_s": _measure(failback, "write_unavailability_s"),
            "failback_client_longest_gap_s": stats.longest_gap(since=failback_started),
            "failback_client_failed_writes": stats.failures_between(failback_started),
            "failback_lost_acknowledged_writes": len(lost_failback),
            "acknowledged_writes": len(stats.acknowledged),
            "demo_duration_s": time.monotonic() - started,
        }
        if as_json:
            emit_json({"figures": figures, "failover": failover, "failback": failback})
        else:
            stdout.print(report_table(failover))
            stdout.print(report_table(failback))
            stdout.print(_figures_table(figures))
        ok = not lost_failback and stale_seen
        return 0 if ok else 1
    finally:
        if "probe" in locals():
            probe.stop()
        if keep:
            _say(
                f"lab left running in {lab_dir} (failback lab down --dir {lab_dir} --purge)",
                as_json,
            )
        else:
            _say("lab down", as_json)
            lab_down(lab_dir, purge=directory is None)


def _figures_table(f: dict[str, Any]) -> Table:
    table = Table(title="what was measured")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    loss = f["failover_possible_loss_bytes"]
    rows = [
        ("failover RTO (run start -> first verified write)", fmt_duration(f["failover_rto_s"])),
        (
            "failover: client could not write for (crash -> first commit on dc2)",
            fmt_duration(f["failover_client_gap_s"]),
        ),
        (
            "failover: WAL the old primary had beyond the standby (bytes)",
            "unknown" if loss is None else str(int(loss)),
        ),
        (
            "failover: acknowledged writes lost (asynchronous replication)",
            str(f["failover_lost_acknowledged_writes"]),
        ),
        (
            "returning dc1 seen as stale-primary, fenced",
            "yes" if f["stale_primary_fenced"] else "NO",
        ),
        (
            "failback write-unavailability (measured by the run)",
            fmt_duration(f["failback_write_unavailability_s"]),
        ),
        (
            "failback: client's longest gap between commits",
            fmt_duration(f["failback_client_longest_gap_s"]),
        ),
        ("failback: client write attempts that failed", str(f["failback_client_failed_writes"])),
        (
            "failback: acknowledged writes lost (must be 0)",
            str(f["failback_lost_acknowledged_writes"]),
        ),
        ("acknowledged writes in total", str(f["acknowledged_writes"])),
        ("demo duration", fmt_duration(f["demo_duration_s"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
