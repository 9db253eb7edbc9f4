"""Promise 3 on real PostgreSQL: SIGKILL the failback run at a step, resume, same end state.

For each chosen step of the failback plan: the service fails over (dc1 SIGKILLed),
dc1 comes back as a stale primary, a client writes through PgBouncer every 10 ms,
``failback app`` is started in its own process and SIGKILLed *at* that step. Then
``resume`` must finish the run: dc1 primary, dc2 its streaming standby, writes routed
to dc1, one promotion only, and not one acknowledged write missing.

Where the kill lands is a state the test sets up, not a moment it guesses: the run is
held in the step by what that step waits for (a client transaction PAUSE waits for,
a frozen HAProxy, PgBouncer, postmaster or startup process, the returning site's WAL
replay paused), then the runner is stopped (SIGSTOP), the journal read, and the runner
SIGKILLed. Each case asserts where it landed: the step started (or, for a router step,
is in the check that comes before its apply) and the next one did not.

One lab is shared by the cases (each one fails over again), to keep the file
affordable on a 2-core machine; a case that finds the lab not at home rebuilds it.
The topology is the lab's with a short stability window and no bake before the
database moves (``pgholds.variant``): the traffic gates are not what is tested here.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from failback.drivers.postgres.capture import socket_dir
from failback.drivers.postgres.lsn import parse_lsn
from failback.hosts import LocalHost
from failback.lab import lab_down, lab_processes
from failback.lab.pg import lab_node
from tests.integration.labfixtures import SERVICE, Lab, assert_home, lab_base, new_lab
from tests.integration.pgholds import (
    advance_until,
    assert_nothing_lost,
    child_pid,
    client,
    frozen,
    isolated_socket,
    newest_run,
    pause_replay,
    pool_pid,
    postmaster_pid,
    resume_replay,
    router_pid,
    run_value,
    start_cli,
    steps_in_journal,
    stopped_at_start,
    variant,
    wait_until,
)

pytestmark = pytest.mark.integration

# step of the failback plan -> (the states it may be in when the kill lands, the next step)
LANDING: dict[str, tuple[set[str], str]] = {
    # dc1 started where nobody reaches it, its slots being read
    "capture-dc1": ({"applying"}, "resync-dc1"),
    "resync-dc1": ({"applying"}, "catchup-dc1"),  # pg_rewind half-way
    "pause-pool-dc2": ({"applying"}, "fence-router-dc2"),  # PAUSE waiting for a transaction
    "fence-router-dc2": ({"pending", "applying"}, "stop-dc2"),  # HAProxy frozen
    "stop-dc2": ({"applying"}, "replay-dc1"),  # fast stop sent, dc2 frozen
    "replay-dc1": ({"applying"}, "promote-dc1"),  # dc1's replay paused
    "promote-dc1": ({"applying"}, "route-router-dc1"),  # pg_promote sent, startup frozen
    "route-router-dc1": ({"pending", "applying"}, "route-pool-dc1"),  # HAProxy frozen
    "route-pool-dc1": ({"pending", "applying"}, "reprotect-dc2"),  # PgBouncer frozen
    "reprotect-dc2": ({"applying"}, "verify-dc1"),  # dc2 made a standby of dc1
}
STARTED = ("applying", "verifying", "done", "skipped", "failed")


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


class Hold:
    """Sets up what holds the run at one step; undoes every freeze and pause at the end."""

    def __init__(self, lab: Lab, runner: Any, run_id: int) -> None:
        self.lab, self.runner, self.run_id = lab, runner, run_id
        self.stack = contextlib.ExitStack()

    def step(self, step: str) -> tuple[str, str | None]:
        return steps_in_journal(self.lab, self.run_id)[step]

    def until(self, step: str, want: Callable[[tuple[str, str | None]], bool]) -> None:
        def reached() -> bool:
            assert self.runner.poll() is None, self.runner.communicate()
            return want(self.step(step))

        wait_until(reached, timeout=120)

    def freeze(self, pid: int | None) -> None:
        self.stack.enter_context(frozen(pid))

    def replay_paused(self) -> None:
        pause_replay(self.lab, "dc1")
        self.stack.callback(_resume_if_standby, self.lab)


def hold_at(step: str, hold: Hold, holder: psycopg.Connection[Any] | None) -> None:
    """Bring the run to ``step`` and keep it there (see LANDING)."""
    lab = hold.lab
    applying = lambda s: s[0] == "applying"  # noqa: E731
    done = lambda s: s[0] == "done"  # noqa: E731
    if step == "capture-dc1":
        hold.until(step, applying)
        os.kill(hold.runner.pid, signal.SIGSTOP)
        advance_until(hold.runner, lambda: os.path.exists(isolated_socket(lab)))
        return
    if step == "resync-dc1":
        hold.until(step, lambda s: applying(s) and _running_program(lab, "pg_rewind"))
        return
    if step == "reprotect-dc2":
        hold.until(step, applying)
        return
    assert holder is not None
    hold.until("pause-pool-dc2", applying)  # PAUSE waits for the client's transaction
    if step == "pause-pool-dc2":
        return
    if step == "fence-router-dc2":
        hold.freeze(router_pid(lab))
    elif step == "stop-dc2":
        hold.freeze(postmaster_pid(lab, "dc2"))  # the fast stop signal waits
    else:
        hold.replay_paused()  # dc1 is resynced and caught up by now
    holder.close()  # the PAUSE completes
    if step == "fence-router-dc2":
        hold.until("pause-pool-dc2", done)
        return
    if step in ("stop-dc2", "replay-dc1"):
        hold.until(step, applying)
        return
    hold.until("replay-dc1", applying)
    if step == "promote-dc1":
        # with the runner stopped: dc1 replays the final position, then its startup
        # process is frozen; the runner goes on, sends pg_promote, and the promotion waits
        os.kill(hold.runner.pid, signal.SIGSTOP)
        resume_replay(lab, "dc1")
        final = parse_lsn(run_value(lab, hold.run_id, "final_lsn.dc2"))
        wait_until(lambda: _replayed(lab) >= final, timeout=60)
        hold.freeze(child_pid(postmaster_pid(lab, "dc1"), "startup"))
        os.kill(hold.runner.pid, signal.SIGCONT)
        hold.until(step, applying)
        return
    hold.freeze(router_pid(lab) if step == "route-router-dc1" else pool_pid(lab))
    resume_replay(lab, "dc1")
    hold.until("promote-dc1" if step == "route-router-dc1" else "route-router-dc1", done)


def _resume_if_standby(lab: Lab) -> None:
    with contextlib.suppress(psycopg.Error):  # promoted meanwhile: nothing to resume
        resume_replay(lab, "dc1")


def _replayed(lab: Lab) -> int:
    with lab.connect("dc1") as conn:
        row = conn.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()
    return parse_lsn(str(row[0])) if row and row[0] else 0


@pytest.mark.parametrize("step", list(LANDING))
def test_sigkill_failback_at_step_then_resume(home_lab: Lab, step: str) -> None:
    lab = home_lab
    lab.unplanned_failover()
    lab.repair("dc1")
    config = variant(lab, "crash", switchover="30s")
    timeline_before = lab.status().db("dc2")["data"]["timeline"]

    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        holder = None
        if step not in ("capture-dc1", "resync-dc1", "reprotect-dc2"):
            holder = psycopg.connect(lab.info.dsn, autocommit=False, prepare_threshold=None)
            holder.execute("SELECT 1")  # a transaction: PgBouncer's PAUSE waits for it
        after = newest_run(lab, "failback")
        runner = start_cli(lab, "failback", SERVICE, "--yes", config=config)
        try:
            run_id = stopped_at_start(lab, runner, kind="failback", after=after)
            os.kill(runner.pid, signal.SIGCONT)
            hold = Hold(lab, runner, run_id)
            with hold.stack:
                hold_at(step, hold, holder)
                os.kill(runner.pid, signal.SIGSTOP)  # the runner stops where it is ...
                at_kill = steps_in_journal(lab, run_id)
                runner.kill()  # ... and dies there
                runner.communicate(timeout=30)
        finally:
            if holder is not None:
                holder.close()
            if runner.poll() is None:
                runner.kill()
                runner.communicate(timeout=30)
        print(f"killed at {step}: {at_kill}")
        states, following = LANDING[step]
        assert at_kill[step][0] in states, at_kill
        assert at_kill[following][0] == "pending", f"the kill landed past {step}: {at_kill}"
        assert at_kill["record"][0] == "pending", at_kill

        (listed,) = [r for r in lab.runs() if r["id"] == run_id]
        assert listed["status"] == "interrupted", listed
        resumed = lab.cli("resume", "--yes", str(run_id), "--json", config=config, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        doc = resumed.json()
        assert doc["status"] == "succeeded", doc

    assert_nothing_lost(probe)  # and the client wrote again after the resume
    # the capture's isolated start is gone, whatever the kill interrupted
    assert not os.path.exists(socket_dir(lab_node(LocalHost(), lab.info, "dc1")))
    assert doc["report"]["diverged"]["captured"] is True, doc["report"]["diverged"]
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
