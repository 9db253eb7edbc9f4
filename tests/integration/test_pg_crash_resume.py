"""Promise 3 on real PostgreSQL: SIGKILL the failback run at a step, resume, same end state.

For each chosen step of the failback plan: the service fails over (dc1 SIGKILLed),
dc1 comes back as a stale primary, a client writes through the router every 10 ms,
``failback app`` is started in its own process and SIGKILLed as soon as the journal
shows that step started (for the resync: while pg_rewind runs). ``resume`` must then
finish the run: dc1 primary, dc2 its streaming standby, writes routed to dc1, one
promotion only, and not one acknowledged write missing.

One lab is shared by the cases (each one fails over again), to keep the file
affordable on a 2-core machine; a case that finds the lab not at home rebuilds it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failback.hosts import LocalHost
from failback.lab import lab_down, lab_processes
from failback.lab.probe import WriteProbe
from tests.conftest import failback_argv
from tests.integration.labfixtures import (
    SERVICE,
    Lab,
    assert_home,
    journal_step_statuses,
    lab_base,
    max_run_id,
    new_lab,
    newest_run_id,
)

pytestmark = pytest.mark.integration

STARTED = ("applying", "verifying", "done", "skipped", "failed")

# (step id of the failback plan, a program of the lab whose presence marks the moment)
CASES = [
    ("resync-dc1", "pg_rewind"),  # dc1's data directory half rewound
    ("pause-pool-dc2", None),  # PgBouncer paused: clients' queries wait
    ("fence-router-dc2", None),  # writes stopped at the router, dc2 still the primary
    ("stop-dc2", None),  # dc2 stopping / stopped, its final position maybe unrecorded
    ("replay-dc1", None),  # dc1 replaying dc2's final position
    ("promote-dc1", None),  # the point of no return
    ("route-router-dc1", None),  # writes being routed back to dc1
    ("route-pool-dc1", None),  # PgBouncer re-pointed at dc1 and resumed
    ("reprotect-dc2", None),  # dc2 being made a standby of dc1
]


@dataclass
class Shared:
    root: Path
    lab: Lab


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    with lab_base(prefix="fb-pgcrash-") as root:
        yield Shared(root, new_lab(root, "lab0"))


@pytest.fixture
def home_lab(shared: Shared) -> Lab:
    """The shared lab, at home (dc1 primary); rebuilt when a previous case left it elsewhere."""
    try:
        assert_home(shared.lab, shared.lab.status())
    except AssertionError:
        lab_down(shared.lab.dir, purge=True)
        shared.lab = new_lab(shared.root, f"lab{len(list(shared.root.iterdir()))}")
    return shared.lab


def _running_program(lab: Lab, program: str) -> bool:
    host = LocalHost()
    for pid in lab_processes(host, lab.dir):
        try:
            argv0 = host.read_text(f"/proc/{pid}/cmdline").split("\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == program:
            return True
    return False


def _wait_for_run(lab: Lab, after: int, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run_id = newest_run_id(lab, after=after, kind="failback")
        if run_id is not None:
            return run_id
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"failback exited {proc.returncode} early: {out}\n{err}")
        time.sleep(0.01)
    raise AssertionError("the failback run never appeared in the journal")


def _kill_at(
    lab: Lab, proc: subprocess.Popen[str], run_id: int, step: str, program: str | None
) -> dict[str, str]:
    """SIGKILL the runner once ``step`` started (and ``program`` runs, when given)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"failback ended ({proc.returncode}) before the kill: {out}{err}")
        status = journal_step_statuses(lab, run_id).get(step)
        if status in STARTED and (program is None or _running_program(lab, program)):
            break
        if program is not None and status in ("done", "skipped", "failed"):
            break  # the program came and went between two looks: kill now anyway
        time.sleep(0.001)
    else:
        raise AssertionError(f"step {step} never started: {journal_step_statuses(lab, run_id)}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return journal_step_statuses(lab, run_id)


@pytest.mark.parametrize(("step", "program"), CASES, ids=[c[0] for c in CASES])
def test_sigkill_failback_at_step_then_resume(
    home_lab: Lab, step: str, program: str | None
) -> None:
    lab = home_lab
    failover = lab.unplanned_failover()
    lab.repair("dc1")
    plan_ids = lab.plan_step_ids("failback")
    assert step in plan_ids, plan_ids
    timeline_before = lab.status().db("dc2")["data"]["timeline"]

    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        after = max_run_id(lab)
        assert after == failover["run_id"]
        proc = subprocess.Popen(
            failback_argv("failback", SERVICE, "-c", str(lab.config), "--yes", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run_id = _wait_for_run(lab, after, proc)
        at_kill = _kill_at(lab, proc, run_id, step, program)
        print(f"killed at {step}: {at_kill}")
        assert at_kill[step] in STARTED, at_kill
        assert at_kill["record"] == "pending", f"the run finished before the kill: {at_kill}"

        (listed,) = [r for r in lab.runs() if r["id"] == run_id]
        assert listed["status"] == "interrupted", listed
        resumed = lab.cli("resume", str(run_id), "--json", timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        doc = resumed.json()
        assert doc["status"] == "succeeded", doc
        time.sleep(0.2)  # the client writes on after the run
    finally:
        stats = probe.stop()

    assert stats.acked_ids(since=time.time() - 0.15), "the client cannot write after resume"
    assert probe.missing(stats.acked_ids()) == [], "acknowledged writes lost"
    status = lab.wait_home_end_state()
    # one promotion of dc1, however many times the run was started
    assert status.db("dc1")["data"]["timeline"] == timeline_before + 1, status.summary()
    # promise 4: the report of the resumed run still has what was measured
    names = [m["name"] for m in doc["report"]["measurements"]]
    assert "write_unavailability_s" in names, names
    steps = {s["id"]: s["status"] for s in doc["report"]["steps"]}
    assert set(steps.values()) <= {"done", "skipped"}, steps
    show = lab.run_show(run_id)
    assert any(e["kind"] == "run.resumed" for e in show["events"]), show["events"]
