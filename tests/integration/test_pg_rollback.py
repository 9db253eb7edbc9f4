"""Rollback after the database switch began, on real PostgreSQL (issue 11, items 2, 4, 7).

Every other real rollback fails before the current primary is stopped. Here steps
*after* ``stop`` fail on the real lab: the returning site's WAL replay is paused
(``pg_wal_replay_pause()``), so the wait for the stopped primary's exact final
position times out, and the run must undo the stop (start the old primary again),
the router fence and the PgBouncer PAUSE. A client writes through PgBouncer the whole
time: the service must end writable on the site it was on, with no acknowledged write
lost, and the report must say how long clients could not write.

Components are *frozen* (SIGSTOP) to hold the run in a chosen step or undo: a state
the test sets, not a moment it guesses. Each crash asserts where it landed.

One lab for the module (tests run in file order). ``away_lab`` rebuilds a lab in the
state a test needs (dc2 primary, dc1 its streaming standby) if an earlier test failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failback.lab import lab_break, lab_down, lab_repair, lab_status
from tests.integration.labfixtures import (
    SERVICE,
    Lab,
    lab_base,
    measurement,
    new_lab,
    step_of,
)
from tests.integration.pgholds import (
    assert_nothing_lost,
    client,
    client_gap_across,
    frozen,
    is_away,
    newest_run,
    pause_replay,
    pool_pid,
    postmaster_pid,
    resume_replay,
    router_pid,
    run_value,
    start_cli,
    steps_in_journal,
    timeline,
    variant,
    wait_step,
    wait_until,
)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------- the lab


@dataclass
class Shared:
    root: Path
    lab: Lab


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    with lab_base(prefix="fb-pgrb-") as root:
        yield Shared(root, new_lab(root, "lab0"))


@pytest.fixture
def away_lab(shared: Shared) -> Lab:
    """The shared lab with dc2 the primary and dc1 its streaming standby."""
    with contextlib.suppress(Exception), shared.lab.connect("dc1") as conn:
        conn.execute("SELECT pg_wal_replay_resume()")
    if not wait_until(lambda: is_away(shared.lab), timeout=20, fail=False):
        lab_down(shared.lab.dir, purge=True)
        shared.lab = new_lab(shared.root, f"lab{len(list(shared.root.iterdir()))}")
        shared.lab.failover("--planned")
        wait_until(lambda: is_away(shared.lab), timeout=60)
    return shared.lab


# --------------------------------------------------------------------------- helpers


def assert_writable_on_dc2(lab: Lab, timeline_before: int) -> None:
    """Back where it was: dc2 the primary on its timeline (nothing was promoted), dc1
    its streaming standby again, writes routed to dc2, the service free."""
    resume_replay(lab)
    wait_until(lambda: is_away(lab), timeout=60)
    assert timeline(lab, "dc2") == timeline(lab, "dc1") == timeline_before
    with lab.connect_dsn() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t_rollback (v text)")
        conn.execute("INSERT INTO t_rollback VALUES ('after')")
        port = conn.execute("SELECT inet_server_port()").fetchone()
    assert port == (lab.port("dc2"),)


# --------------------------------------------------------------------------- 1: failover


def test_unplanned_failover_rto_matches_what_the_client_saw(shared: Shared) -> None:
    """Promise 4: rto_s is when the run verified a write through the clients' endpoint,
    and the client itself wrote again between the routing and 1 s after that."""
    lab = shared.lab
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        lab.record_primary_position()
        lab_break(lab.dir, "dc1", "db")
        doc = lab.failover()
    report = doc["report"]
    rto = measurement(report, "rto_s")["value"]
    assert rto is not None and rto > 0
    verify, fence, route = (
        step_of(report, s) for s in ("verify-dc2", "pause-pool-dc1", "route-pool-dc2")
    )
    verified_at = report["started_at"] + rto
    assert verify["started_at"] <= verified_at <= verify["finished_at"], (verify, rto)
    # (a SIGKILLed postmaster's backends may commit a moment more: look after the fence)
    first_after = next(t for _, t in probe.stats.acknowledged if t > fence["started_at"])
    print(f"rto_s {rto:.3f}; client wrote again {first_after - report['started_at']:.3f}s in")
    # the upper tolerance covers PgBouncer opening a server connection to the new
    # primary for the client, which takes most of a second on a loaded 2-core machine
    assert route["started_at"] - 0.05 <= first_after <= verified_at + 1.0
    assert lab.status().needs_resync == ["dc1"]


# --------------------------------------------------------------------------- 2: rollback


def test_replay_failing_after_the_stop_restarts_the_old_primary(shared: Shared) -> None:
    """The replay wait fails after dc2 was stopped: the undo starts dc2 again as the
    primary, unfences it and RESUMEs PgBouncer; not one acknowledged write is lost and
    the rolled-back report measures the write-unavailability clients lived through."""
    lab = shared.lab
    if lab.status().needs_resync != ["dc1"]:
        pytest.skip("needs the failed-over lab of the previous test")
    lab_repair(lab.dir, "dc1", "db")
    config = variant(lab, "approve", approval="required")
    waiting = lab.cli_json("failback", SERVICE, "--yes", config=config)
    assert waiting["status"] == "waiting-approval", waiting  # resynced and caught up
    run_id = int(waiting["run_id"])
    timeline_before = timeline(lab, "dc2")
    assert timeline(lab, "dc1") == timeline_before  # rewound onto dc2's timeline
    pause_replay(lab)  # dc1 streams (the stop will find it caught up) but replays nothing
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        approved = lab.cli("approve", "--yes", str(run_id), "--json", config=config)
    assert approved.returncode == 1, approved.stdout + approved.stderr
    doc = approved.json()
    assert doc["status"] == "rolled-back", doc
    assert "replayed up to" in doc["error"]

    report = doc["report"]
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["stop-dc2"]["status"] == "done" and steps["stop-dc2"]["output"]["final_lsn"]
    assert steps["replay-dc1"]["status"] == "failed"
    assert steps["promote-dc1"]["status"] == "pending"
    for undone in ("stop-dc2", "fence-router-dc2", "pause-pool-dc2"):
        assert steps[undone]["undo"] == "undone", steps
    assert steps["resync-dc1"]["undo"] is None  # a resync is not undone: dc1 stays a standby
    assert report["rollback"]["ending"] == "rolled-back"

    stats = assert_nothing_lost(probe)
    assert_writable_on_dc2(lab, timeline_before)
    # dc1 was resynced before the rollback: it streams from dc2 and is a safe failover
    # target again (needs_resync would otherwise refuse a failover to it)
    assert lab.status().needs_resync == []

    # promise 4: what clients lived through is in the report, within a stated tolerance:
    # no client write can land while the run says writes were unavailable (0.1 s for a
    # commit in flight at the fence), and clients write again within 0.5 s of the end
    unavailable = measurement(report, "write_unavailability_s")
    assert unavailable["value"] is not None and "rollback" in (unavailable["note"] or "")
    gap = client_gap_across(
        stats, steps["pause-pool-dc2"]["started_at"], steps["replay-dc1"]["finished_at"]
    )
    print(f"write_unavailability_s {unavailable['value']:.3f}, client gap {gap:.3f}")
    assert unavailable["value"] - 0.1 <= gap <= unavailable["value"] + 0.5


UNDO_CRASHES: dict[str, tuple[Callable[[Lab], int | None] | None, Callable[[Lab], bool]]] = {
    # undo of the stop: dc2's postmaster started again, the undo not yet journaled done
    # (no freeze needed: the undo waits until dc2 accepts connections)
    "stop-dc2": (None, lambda lab: postmaster_pid(lab, "dc2") is not None),
    # undo of the router fence: HAProxy frozen, so the runtime API call hangs
    "fence-router-dc2": (router_pid, lambda lab: True),
    # undo of the PAUSE: PgBouncer frozen, so the RESUME hangs
    "pause-pool-dc2": (pool_pid, lambda lab: True),
}


@pytest.mark.parametrize("undo_of", list(UNDO_CRASHES))
def test_sigkill_during_the_postgres_undo_then_abort(away_lab: Lab, undo_of: str) -> None:
    """Issue 9's crash matrix on the PostgreSQL undo path: SIGKILL the runner inside an
    undo; resume is refused (a rollback never goes forward), abort finishes the undo."""
    lab = away_lab
    config = variant(lab, "fast")
    timeline_before = timeline(lab, "dc2")
    after = newest_run(lab)
    pause_replay(lab)
    freeze, landed = UNDO_CRASHES[undo_of]
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        runner = start_cli(lab, "failback", SERVICE, "--yes", config=config)
        try:
            run_id = wait_step(
                lab, runner, after=after, step="replay-dc1", want=lambda s: s[0] == "applying"
            )
            hold = frozen(freeze(lab)) if freeze else contextlib.nullcontext()
            with hold:
                wait_step(
                    lab,
                    runner,
                    after=after,
                    step=undo_of,
                    want=lambda s: s[1] is not None and landed(lab),
                )
                os.kill(runner.pid, signal.SIGSTOP)  # freeze the runner where it is...
                at_kill = steps_in_journal(lab, run_id)
                runner.kill()  # ... and kill it there
                runner.communicate(timeout=30)
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.communicate(timeout=30)
        print(f"killed during the undo of {undo_of}: {at_kill}")
        # where it landed: inside this undo, after the newer ones, before the older ones
        assert at_kill[undo_of][1] == "undoing", at_kill
        order = ["pause-pool-dc2", "fence-router-dc2", "stop-dc2"]
        for newer in order[order.index(undo_of) + 1 :]:
            assert at_kill[newer][1] == "undone", at_kill
        for older in order[: order.index(undo_of)]:
            assert at_kill[older][1] is None, at_kill

        refused = lab.cli("resume", "--yes", str(run_id), config=config)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"failback abort {run_id}" in refused.stderr
        aborted = lab.cli("abort", str(run_id), "--yes", "--json", config=config, timeout=300)
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        doc = aborted.json()
        assert doc["status"] == "rolled-back", doc
    steps = {s["id"]: s["undo"] for s in doc["report"]["steps"]}
    assert all(steps[s] == "undone" for s in order), steps
    assert_nothing_lost(probe)
    assert_writable_on_dc2(lab, timeline_before)


def test_an_undo_that_fails_stops_for_a_person_then_abort_finishes(away_lab: Lab) -> None:
    """HAProxy is frozen during the rollback: its undo fails, the run ends ``failed``
    with what a person must do (PgBouncer stays paused: clients wait, they get no
    error). Once HAProxy runs again, abort finishes the undo with nothing lost."""
    lab = away_lab
    config = variant(lab, "fast")
    timeline_before = timeline(lab, "dc2")
    after = newest_run(lab)
    pause_replay(lab)
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        runner = start_cli(lab, "failback", SERVICE, "--yes", config=config)
        wait_step(lab, runner, after=after, step="replay-dc1", want=lambda s: s[0] == "applying")
        with frozen(router_pid(lab)):
            out, err = runner.communicate(timeout=300)
        assert runner.returncode == 1, out + err
        doc = json.loads(out)
        run_id = int(doc["run_id"])
        assert doc["status"] == "failed", doc
        assert f"then `failback abort {run_id}` again" in doc["hint"], doc
        steps = {s["id"]: s for s in doc["report"]["steps"]}
        assert steps["stop-dc2"]["undo"] == "undone"  # dc2 runs again ...
        assert steps["fence-router-dc2"]["undo"] == "undo-failed"  # ... unreachable
        assert "undo failed" in (steps["fence-router-dc2"]["error"] or "")
        assert steps["pause-pool-dc2"]["undo"] is None  # still paused: clients wait
        status = lab.status()
        assert status.current_run is not None and status.current_run["id"] == run_id

        refused = lab.cli("resume", "--yes", str(run_id), config=config)
        assert refused.returncode == 2 and f"failback abort {run_id}" in refused.stderr
        aborted = lab.cli_json("abort", str(run_id), "--yes", config=config)
    assert aborted["status"] == "rolled-back", aborted
    assert {s["id"]: s["undo"] for s in aborted["report"]["steps"]}["pause-pool-dc2"] == "undone"
    stats = assert_nothing_lost(probe)
    assert stats.failures == [], stats.failures[:3]  # PgBouncer held them: no error
    assert_writable_on_dc2(lab, timeline_before)


# --------------------------------------------------------------------------- 4: resume


def test_failed_run_is_resumed_after_its_cause_was_fixed(away_lab: Lab) -> None:
    """A failback fails past its point of no return (a post-check fails); it keeps the
    service, says to fix the cause and resume; once fixed, resume finishes it."""
    lab = away_lab
    flag = lab.dir / "postcheck-ok"
    config = variant(lab, "postcheck", postcheck=f"test -e {flag}")
    timeline_before = timeline(lab, "dc2")
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        failed = lab.cli("failback", SERVICE, "--yes", "--json", config=config)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        doc = failed.json()
        run_id = int(doc["run_id"])
        assert doc["status"] == "failed", doc
        assert "cause" in doc["error"]
        assert f"failback resume {run_id}" in doc["hint"]
        assert step_of(doc["report"], "postcheck")["status"] == "failed"
        # promise 4: the failed run's report has the switch it made
        assert measurement(doc["report"], "write_unavailability_s")["value"] > 0
        status = lab.status()
        assert status.current_run["id"] == run_id  # the service stays locked
        # the switch happened (status still calls dc1 stale until the run records it)
        assert status.db("dc2")["role"] == "standby", status.summary()
        assert lab_status(lab.dir)["router"]["write_target"] == "dc1"

        flag.touch()  # the cause is fixed
        resumed = lab.cli_json("resume", "--yes", str(run_id), config=config)
    assert resumed["status"] == "succeeded", resumed
    steps = {s["id"]: s["status"] for s in resumed["report"]["steps"]}
    assert steps["postcheck"] == "done" and steps["promote-dc1"] == "done", steps
    assert_nothing_lost(probe)
    status = lab.wait_home_end_state()
    assert status.db("dc1")["data"]["timeline"] == timeline_before + 1  # one promotion


# --------------------------------------------------------------------------- 5: fence undo


def test_abort_after_the_runner_died_fencing_the_database_starts_it_again(
    shared: Shared,
) -> None:
    """A forced failover dies while stopping the primary: dc1's postmaster is frozen,
    so the fast stop it was sent is still pending. The abort's undo of the database
    fence must wait for that stop to finish and then start dc1 again (not take the
    dying server for a running one): dc1 ends the primary, routed, nothing lost."""
    lab = shared.lab
    try:
        lab.wait_home_end_state(timeout=30)
    except AssertionError:
        pytest.skip("needs the lab at home, where the previous test leaves it")
    config = variant(lab, "fast")
    timeline_before = timeline(lab, "dc1")
    after = newest_run(lab, "failover")
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        with frozen(postmaster_pid(lab, "dc1")):
            runner = start_cli(lab, "failover", SERVICE, "--force", "--yes", config=config)
            run_id = wait_step(
                lab, runner, after=after, kind="failover", step="fence-db-dc1",
                want=lambda s: s[0] == "applying",
            )  # fmt: skip
            # the fence recorded (durably) that dc1 ran: its fast stop is being sent
            wait_until(lambda: run_value(lab, run_id, "was_running.dc1") is True)
            runner.kill()
            runner.communicate(timeout=30)
            at_kill = steps_in_journal(lab, run_id)
            print(f"killed while fencing dc1's database: {at_kill}")
            assert at_kill["fence-db-dc1"][0] == "applying", at_kill
            assert at_kill["promote-dc2"][0] == "pending", at_kill
            aborter = start_cli(lab, "abort", str(run_id), "--yes", config=config)
            wait_step(
                lab, aborter, after=None, kind="failover", step="fence-db-dc1",
                want=lambda s: s[1] == "undoing",
            )  # fmt: skip
        # dc1 runs again: the stop the dead runner sent goes through, then the undo acts
        out, err = aborter.communicate(timeout=300)
        assert aborter.returncode == 0, out + err
        aborted = json.loads(out)
        assert aborted["status"] == "aborted", aborted
        steps = {s["id"]: s for s in aborted["report"]["steps"]}
        assert steps["fence-db-dc1"]["undo"] == steps["fence-router-dc1"]["undo"] == "undone"
    assert_nothing_lost(probe)
    status = lab.wait_home_end_state()
    assert status.db("dc1")["data"]["timeline"] == timeline_before  # nothing was promoted
