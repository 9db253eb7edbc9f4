"""Helpers for PostgreSQL lab tests that hold a run in a chosen step, kill it there and
look at the journal: topology variants quick to run, frozen processes, a client.

A run is *held* by freezing (SIGSTOP) the component a step talks to, or by pausing
the standby's WAL replay: a state the test sets, not a moment it guesses. The journal
is read straight from SQLite (read-only) so that polling it costs no CLI start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from failback.drivers.postgres.capture import socket_dir
from failback.drivers.postgres.process import running_postmaster
from failback.hosts import LocalHost
from failback.lab import haproxy as lab_router
from failback.lab import lab_status
from failback.lab import pool as lab_pool
from failback.lab.pg import lab_node
from failback.lab.probe import ProbeStats, WriteProbe
from tests.conftest import failback_argv
from tests.integration.labfixtures import SERVICE, Lab

REPLAY_TIMEOUT = "2s"
"""switchover_timeout of the variants: how long the replay wait lasts before it fails."""


def variant(
    lab: Lab,
    name: str,
    *,
    approval: str = "none",
    postcheck: str | None = None,
    observation: str = "0s",
    switchover: str = REPLAY_TIMEOUT,
) -> Path:
    """The lab's topology, quick to run: no bake before the database moves, a short
    stability window, no observation window (unless asked), a replay wait of REPLAY_TIMEOUT."""
    doc = yaml.safe_load(lab.config.read_text())
    service = doc["services"][SERVICE]
    service["components"]["db"]["options"]["switchover_timeout"] = switchover
    service["policy"].update(
        approval=approval,
        stability_window="200ms",
        traffic_steps=[100],
        bake_time="200ms",
        observation_window=observation,
    )
    if postcheck is not None:
        service["checks"].append(
            {"name": "cause", "type": "command", "command": postcheck, "use": ["postcheck"]}
        )
    path = lab.dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wait_until(predicate: Callable[[], Any], *, timeout: float = 60, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return True
        if time.monotonic() > deadline:
            if fail:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {predicate}")
            return False
        time.sleep(0.02)


def steps_in_journal(lab: Lab, run_id: int) -> dict[str, tuple[str, str | None]]:
    """(status, undo status) of each step, read straight from the journal (read-only)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        rows = db.execute(
            "SELECT step_id, status, undo_status FROM steps WHERE run_id = ? ORDER BY idx",
            (run_id,),
        ).fetchall()
    return {str(s): (str(st), u) for s, st, u in rows}


def run_status(lab: Lab, run_id: int) -> str:
    """The run's stored status (``observing``... not ``interrupted``, which is shown only)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return str(row[0])


def newest_run(lab: Lab, kind: str = "failback") -> int | None:
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        row = db.execute("SELECT max(id) FROM runs WHERE kind = ?", (kind,)).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def start_cli(lab: Lab, *args: str, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        failback_argv(*args, "--json", "-c", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_step(
    lab: Lab,
    proc: subprocess.Popen[str],
    *,
    after: int | None,
    step: str,
    want: Any,
    kind: str = "failback",
) -> int:
    """The newest run's id (newer than ``after``), once ``want((status, undo))`` holds
    for ``step``; fails when ``proc`` ends first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_id = newest_run(lab, kind)
        if run_id is not None and run_id != after:
            state = steps_in_journal(lab, run_id).get(step)
            if state is not None and want(state):
                return run_id
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}) first: {out}\n{err}")
        time.sleep(0.002)
    raise AssertionError(f"{step} never reached the wanted state")


def stopped_at_start(lab: Lab, proc: subprocess.Popen[str], *, kind: str, after: int | None) -> int:
    """SIGSTOP the runner ``proc`` as soon as its run is in the journal (the run's first
    step takes far longer than this poll), so a component can be frozen before the run
    reaches it; the caller SIGCONTs it. The planner, which refuses to plan with a router
    it cannot reach, has already looked by then."""
    deadline = time.monotonic() + 120
    while (run_id := newest_run(lab, kind)) in (None, after):
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}) first: {out}\n{err}")
        assert time.monotonic() < deadline, "the run never appeared in the journal"
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGSTOP)
    assert run_id is not None
    return run_id


@contextlib.contextmanager
def frozen(pid: int | None) -> Iterator[None]:
    """SIGSTOP a process (a router, the pool, a postmaster), SIGCONT it on the way out."""
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def router_pid(lab: Lab) -> int | None:
    return lab_router.router_pid(LocalHost(), lab.info.router)


def pool_pid(lab: Lab) -> int | None:
    return lab_pool.pool_pid(LocalHost(), lab.info.pool)


def postmaster_pid(lab: Lab, site: str) -> int | None:
    host = LocalHost()
    return running_postmaster(host, lab_node(host, lab.info, site))


def child_pid(parent: int | None, title: str) -> int | None:
    """The child of ``parent`` whose process title starts with ``postgres: TITLE``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and argv.startswith(f"postgres: {title}"):
            return int(entry.name)
    return None


def run_value(lab: Lab, run_id: int, key: str) -> Any:
    """One of the values a run keeps in the journal (``final_lsn.dc2``...)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        row = db.execute("SELECT values_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    return json.loads(row[0]).get(key)


def pause_replay(lab: Lab, site: str = "dc1") -> None:
    with lab.connect(site) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")


def resume_replay(lab: Lab, site: str = "dc1") -> None:
    with lab.connect(site) as conn:
        conn.execute("SELECT pg_wal_replay_resume()")


def timeline(lab: Lab, site: str) -> int:
    return int(lab.status().db(site)["data"]["timeline"])


@contextlib.contextmanager
def client(lab: Lab) -> Iterator[WriteProbe]:
    """A client writing through PgBouncer every 10 ms; on the way out it waits until
    it wrote again (a state), then stops."""
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        yield probe
        mark = time.time()
        wait_until(lambda: probe.stats.acked_ids(since=mark), timeout=60)
    finally:
        probe.stop()


def assert_nothing_lost(probe: WriteProbe) -> ProbeStats:
    stats = probe.stats
    assert len(stats.acked_ids()) > 10, "the client hardly wrote"
    assert probe.missing(stats.acked_ids()) == [], "acknowledged writes lost"
    return stats


def client_gap_across(stats: ProbeStats, start: float, end: float) -> float:
    """The longest time the client went without an acknowledged write, across the window
    [start, end] (from its last ack before ``start`` to its first after ``end``)."""
    before = [t for _, t in stats.acknowledged if t <= start]
    after = [t for _, t in stats.acknowledged if t >= end]
    assert before and after, "the client did not write on both sides of the window"
    return stats.longest_gap(since=before[-1], until=after[0])


def is_away(lab: Lab) -> bool:
    """dc2 primary, dc1 its streaming standby on the same timeline, writes to dc2, no run.

    (``needs_resync`` is not looked at: a resync step takes its site off the list once
    it streams, which test_pg_rollback checks where it matters.)"""
    status = lab.status()
    dc1, dc2 = status.db("dc1"), status.db("dc2")
    problems = [
        f"{what}: {status.summary()}"
        for what, ok in [
            ("active site", status.active_site == "dc2"),
            ("a run holds the service", status.current_run is None),
            ("dc2 not primary", dc2["role"] == "primary"),
            ("dc1 not a streaming standby", dc1["role"] == "standby" and dc1["data"]["streaming"]),
            ("timelines differ", dc1["data"]["timeline"] == dc2["data"]["timeline"]),
            ("router", lab_status(lab.dir)["router"]["write_target"] == "dc2"),
        ]
        if not ok
    ]
    if problems:
        print(problems[0])
    return not problems


def isolated_socket(lab: Lab) -> str:
    """The socket of dc1's isolated start during a capture (``capture.socket_dir``)."""
    node = lab_node(LocalHost(), lab.info, "dc1")
    return os.path.join(socket_dir(node), f".s.PGSQL.{node.port}")


def advance_until(runner: Any, reached: Callable[[], bool], *, timeout: float = 60) -> None:
    """Let a SIGSTOPped runner go on a few milliseconds at a time until ``reached``:
    the kill then lands inside a window too short to hit by polling alone."""
    deadline = time.monotonic() + timeout
    while not reached():
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "the runner never reached the state"
        os.kill(runner.pid, signal.SIGCONT)
        time.sleep(0.003)
        os.kill(runner.pid, signal.SIGSTOP)
        time.sleep(0.002)
