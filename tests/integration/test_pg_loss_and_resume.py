"""Measured loss of an unplanned failover, and runs resumed after a crash (issue 11, 3 and 7).

Real lag, not a clamp at 0: the standby's WAL receiver is held back (its
``primary_conninfo`` emptied), the client writes on the primary and every write is
acknowledged, the monitor records the primary's position, the primary is SIGKILLed.
The failover (itself killed once and resumed) must report exactly how far the last
seen position was ahead of what the standby received, and the writes the client
lost must be exactly those it made after the standby stopped receiving.

Then two failbacks are killed while ``observing``: one is aborted (it switches back
with no loss), the other resumed (it commits). One lab for the module; each test
starts from where the previous one left it and skips when that is not so.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.drivers.postgres.lsn import parse_lsn
from failback.lab import lab_break, lab_repair, lab_status
from tests.integration.labfixtures import (
    SERVICE,
    Lab,
    lab_base,
    measurement,
    new_lab,
)
from tests.integration.pgholds import (
    assert_nothing_lost,
    client,
    frozen,
    is_away,
    newest_run,
    pool_pid,
    run_status,
    start_cli,
    steps_in_journal,
    stopped_at_start,
    variant,
    wait_step,
    wait_until,
)

pytestmark = pytest.mark.integration

LOST_WRITES = 40


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base(prefix="fb-pgloss-") as root:
        yield new_lab(root)


def lsn(lab: Lab, site: str, query: str) -> int:
    with lab.connect(site) as conn:
        row = conn.execute(f"SELECT ({query})::text").fetchone()
    assert row is not None and row[0] is not None, query
    return parse_lsn(str(row[0]))


def receiving(lab: Lab, site: str) -> bool:
    with lab.connect(site) as conn:
        return conn.execute("SELECT 1 FROM pg_stat_wal_receiver").fetchone() is not None


def values(lab: Lab, site: str) -> set[str]:
    return lab.values_on(site, "t_loss")


def test_unplanned_failover_reports_the_loss_the_client_saw(lab: Lab) -> None:
    with lab.connect_dsn() as conn:
        conn.execute("CREATE TABLE t_loss (v text PRIMARY KEY)")
        for i in range(20):
            conn.execute("INSERT INTO t_loss VALUES (%s)", (f"kept-{i}",))
    kept = {f"kept-{i}" for i in range(20)}
    lab.wait_values_on("dc2", "t_loss", kept)

    # hold back dc2's WAL receiver: from now on dc2 receives nothing
    with lab.connect("dc2") as conn:
        conn.execute("ALTER SYSTEM SET primary_conninfo = ''")
        conn.execute("SELECT pg_reload_conf()")
    wait_until(lambda: not receiving(lab, "dc2"))
    received = lsn(lab, "dc2", "pg_last_wal_receive_lsn()")

    # the client writes on dc1; every write is acknowledged
    before = lsn(lab, "dc1", "pg_current_wal_lsn()")
    lost = {f"lost-{i}" for i in range(LOST_WRITES)}
    with lab.connect_dsn() as conn:
        for value in sorted(lost):
            conn.execute("INSERT INTO t_loss VALUES (%s)", (value,))
    after = lsn(lab, "dc1", "pg_current_wal_lsn()")
    assert after > before >= received
    assert lost <= values(lab, "dc1") and not lost & values(lab, "dc2")

    lab.record_primary_position()  # the monitor saw dc1 at (or past) ``after``
    recorded = lab.status().doc["last_primary"]
    assert recorded["site"] == "dc1" and parse_lsn(recorded["lsn"]) >= after, recorded
    lab_break(lab.dir, "dc1", "db")

    # the failover is killed at its PgBouncer fence (PgBouncer frozen), then resumed
    config = variant(lab, "fast")
    runner = start_cli(lab, "failover", SERVICE, "--yes", config=config)
    try:
        run_id = stopped_at_start(lab, runner, kind="failover", after=None)
        before_hold = steps_in_journal(lab, run_id)
        assert before_hold["pause-pool-dc1"] == ("pending", None), before_hold
        with frozen(pool_pid(lab)):
            os.kill(runner.pid, signal.SIGCONT)
            # past its preflight it talks to PgBouncer (first to look whether it is
            # paused already): frozen, that takes 2 s before failing; kill it in there
            wait_step(
                lab, runner, after=None, kind="failover", step="preflight",
                want=lambda s: s[0] == "done",
            )  # fmt: skip
            os.kill(runner.pid, signal.SIGSTOP)
            at_kill = steps_in_journal(lab, run_id)
    finally:
        runner.kill()
        runner.communicate(timeout=30)
    print(f"failover killed at {at_kill}")
    assert at_kill["pause-pool-dc1"][0] in ("pending", "applying"), at_kill
    assert at_kill["promote-dc2"][0] == "pending", at_kill
    resumed = lab.cli_json("resume", "--yes", str(run_id), config=config)
    assert resumed["status"] == "succeeded", resumed
    report = resumed["report"]
    assert {s["status"] for s in report["steps"]} <= {"done", "skipped"}, report["steps"]

    # what was reported: exactly the recorded position minus what dc2 had received ...
    loss = measurement(report, "possible_loss_bytes")
    assert loss["value"] == parse_lsn(recorded["lsn"]) - received, (loss, recorded, received)
    assert measurement(report, "standby_received_lsn")["value"] == received
    # ... which covers every byte of WAL the lost writes made
    assert loss["value"] >= after - before > 0, loss
    # what the client lost: exactly the writes acknowledged after dc2 stopped receiving
    on_dc2 = values(lab, "dc2")
    assert kept <= on_dc2, "a write dc2 had received is missing"
    assert len(lost - on_dc2) == LOST_WRITES, sorted(on_dc2 - kept)
    # and the new primary takes writes
    with lab.connect_dsn() as conn:
        conn.execute("INSERT INTO t_loss VALUES ('after-failover')")
        assert conn.execute("SELECT inet_server_port()").fetchone() == (lab.port("dc2"),)
    assert lab.status().needs_resync == ["dc1"]


def kill_when_observing(lab: Lab, config: Path) -> int:
    runner = start_cli(lab, "failback", SERVICE, "--yes", config=config)
    try:
        run_id = wait_step(
            lab, runner, after=newest_run(lab), step="observe", want=lambda s: s[0] == "applying"
        )
        wait_until(lambda: run_status(lab, run_id) == "observing", timeout=30)
        os.kill(runner.pid, signal.SIGSTOP)
        at_kill = steps_in_journal(lab, run_id)
        status = run_status(lab, run_id)
    finally:
        runner.kill()
        runner.communicate(timeout=30)
    print(f"failback killed while {status}: {at_kill}")
    assert status == "observing" and at_kill["observe"][0] == "applying", at_kill
    assert at_kill["record"][0] == "done", at_kill
    return run_id


def test_runs_killed_while_observing_are_aborted_or_resumed(lab: Lab) -> None:
    """Killed in the observation window: ``abort`` switches back with the zero-loss
    switchover; ``resume`` goes on observing for what is left of the window, then
    commits."""
    if lab.status().needs_resync != ["dc1"]:
        pytest.skip("needs the failed-over lab of the previous test")
    lab_repair(lab.dir, "dc1", "db")
    with client(lab) as probe:
        wait_until(lambda: len(probe.stats.acknowledged) > 20)
        run_id = kill_when_observing(lab, variant(lab, "observe-long", observation="120s"))
        aborted = lab.cli_json("abort", str(run_id), "--yes", config=lab.dir / "observe-long.yaml")
        assert aborted.get("status") == "rolled-back", aborted
        assert "observation window" in aborted["error"]
        steps = {s["id"]: s["status"] for s in aborted["report"]["steps"]}
        assert steps["observe"] == "reverted" and steps["back-promote-dc2"] == "done", steps
        # promise 4: the rolled-back run reports both switches' write-unavailability
        for name in ("write_unavailability_s", "switch_back_write_unavailability_s"):
            assert measurement(aborted["report"], name)["value"] > 0, name
        wait_until(lambda: is_away(lab), timeout=60)

        config = variant(lab, "observe-short", observation="4s")
        run_id = kill_when_observing(lab, config)
        resumed = lab.cli_json("resume", "--yes", str(run_id), config=config)
        assert resumed["status"] == "succeeded", resumed
        events = lab.run_show(run_id)["events"]
        committed = [e for e in events if e["kind"] == "run.committed"]
        assert len(committed) == 1, [e["kind"] for e in events]
        # the resumed run observed what was left of the window: not one moment less
        windows = {e["data"]["undo_until"] for e in events if e["kind"] == "run.observing"}
        assert len(windows) == 1 and committed[0]["ts"] >= windows.pop(), events
    assert_nothing_lost(probe)
    lab.wait_home_end_state()
    assert lab_status(lab.dir)["router"]["write_target"] == "dc1"
