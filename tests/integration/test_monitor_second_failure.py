"""A primary that dies during or just after a failback is failed over (issue 10).

Through the real monitor (``failback monitor`` in its own process) on one real lab
(``lab up --auto --sync``: PostgreSQL dc1 + dc2 in zero-loss mode kept by the monitor,
HAProxy, PgBouncer, the web tier), shared by the three cases to keep the file
affordable. A client writes through PgBouncer every 10 ms in each case. Each case:
dc1 is SIGKILLed, the monitor fails over; dc1 is repaired and the monitor fails back
by itself; then dc1's postmaster is SIGKILLed again at one moment of that failback:

* during its observation window: the window notices the dead new primary and switches
  back by unplanned failover to dc2 (re-protected a moment before);
* just after its commit: the monitor fails over at once (level-triggered: the failure
  began while the run still held the service, and is acted on when it ends);
* while it waits at its stability gate: the monitor aborts its own failback before
  its point of no return;
* while no monitor runs (it was SIGKILLed in the window): the next monitor continues
  its own failback, which commits over the dead primary; the failure began while the
  run held the service, and is acted on as soon as the run ends (level-triggered).

And last, the other way round: dc2, the active site, dies while a person's failback
waits for approval; the monitor aborts that parked run and fails over to dc1.

Each case ends with the service writable at dc2, automatic failback suspended with the
reason shown, not one acknowledged write lost, and the service home again after a
person's ``failback auto enable``.

Waits are bounded polls on what the monitor reports; no assertion is about elapsed
time (bench/failover_rto.py measures the RTO of these cases).
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from failback.lab import lab_break, lab_repair, lab_status
from failback.lab.probe import ProbeStats, WriteProbe
from tests.conftest import failback_argv, run_cli
from tests.integration.labfixtures import SERVICE, Lab, lab_base
from tests.integration.test_monitor import (
    MonitorProcess,
    auto_lab,
    monitor_doc,
    on_site,
    status_doc,
    wait_for,
)

pytestmark = pytest.mark.integration

OBSERVATION_WINDOW = "5s"
"""Long enough to restore zero-loss mode, kill dc1 and detect it inside the window."""

HOLD_DOWN_S = 6.0
"""The second failure comes within seconds of the failback: inside it. Each case starts
once the previous case's failback is older than this (else its first failure would
rightly be taken for a flap)."""


@dataclass
class Shared:
    lab: Lab
    mon: MonitorProcess
    go: Path
    once: Path


def spawn_monitor(lab: Lab) -> MonitorProcess:
    """``failback monitor`` as systemd would run it; its events appended to one log."""
    log = lab.dir / "monitor-events.jsonl"
    with open(lab.dir / "monitor.stderr", "ab") as err:
        proc = subprocess.Popen(
            failback_argv("monitor", "-c", str(lab.config), "--log-file", str(log)),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    mon = MonitorProcess(lab, proc, log)
    wait_for(
        "the monitor started",
        lambda: [e for e in mon.events("monitor.started") if e["data"]["pid"] == proc.pid],
        timeout=60,
    )
    return mon


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    """The lab and its monitor, for every case of this file.

    ``dc1-gate`` is a declared check of dc1 (a precheck, so every stability judgement
    runs it) that passes while ``go`` exists, or once per ``once`` token (consumed).
    Its monitor probe runs every 10 minutes, so the monitor judges dc1 on what it saw
    at start; the stability-gate case takes ``go`` away so that the failback's own
    precheck passes (one token) and its stability gate then waits: a run waiting at its
    stability gate, deterministically.
    """
    with lab_base("fb-2nd-") as root:
        lab = auto_lab(root, sync=True)
        go, once = lab.dir / "dc1-gate.go", lab.dir / "dc1-gate.once"
        go.touch()
        doc = yaml.safe_load(lab.config.read_text())
        svc = doc["services"][SERVICE]
        svc["policy"].update(
            {"observation_window": OBSERVATION_WINDOW, "hold_down": f"{HOLD_DOWN_S:g}s"}
        )
        svc["checks"].append({
            "name": "dc1-gate", "type": "command", "site": "dc1", "use": ["precheck"],
            "interval": "10m", "timeout": "5s",
            "command": f"test -e {go} || {{ test -e {once} && rm -f {once}; }}",
        })  # fmt: skip
        lab.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        s = Shared(lab, spawn_monitor(lab), go, once)
        try:
            wait_for("first health records", lambda: len(monitor_doc(lab)["health"]) >= 7)
            yield s
            assert s.mon.stop() == 0
        finally:
            if s.mon.proc.poll() is None:
                s.mon.proc.kill()
            s.mon.proc.wait(timeout=30)


# --------------------------------------------------------------------------- helpers


def run_row(lab: Lab, run_id: int) -> dict[str, Any]:
    """The run as journaled (read-only), with its steps' statuses."""
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        row = db.execute("SELECT status, kind FROM runs WHERE id = ?", (run_id,)).fetchone()
        steps = dict(db.execute("SELECT step_id, status FROM steps WHERE run_id = ?", (run_id,)))
    return {"status": row[0], "kind": row[1], "steps": steps}


def last_failback_at(lab: Lab) -> float:
    with contextlib.closing(
        sqlite3.connect(f"file:{lab.journal_path}?mode=ro", uri=True, timeout=5)
    ) as db:
        (at,) = db.execute(
            "SELECT max(finished_at) FROM runs WHERE kind = 'failback' AND status = 'succeeded'"
        ).fetchone()
    return float(at or 0.0)


def home_and_zero_loss(lab: Lab) -> bool:
    doc = status_doc(lab)
    return (
        doc["active_site"] == "dc1"
        and not doc["needs_resync"]
        and doc["current_run"] is None
        and doc["monitor"]["zero_loss"]["on"]
        and doc["monitor"]["failback"]["code"] == "home"
    )


def start_writer(s: Shared) -> WriteProbe:
    wait_for("home and in zero-loss mode", lambda: home_and_zero_loss(s.lab), timeout=120)
    wait_for(
        "the hold-down of the last failback over",
        lambda: time.time() - last_failback_at(s.lab) > HOLD_DOWN_S,
    )
    probe = WriteProbe(s.lab.info.dsn, interval=0.01).start()
    wait_for("first writes", lambda: len(probe.stats.acknowledged) > 20)
    return probe


def fail_over_then_repair(s: Shared) -> int:
    """dc1 dies, the monitor fails over; dc1 is repaired. The event id to wait after."""
    mark = s.mon.last_id()
    lab_break(s.lab.dir, "dc1", "db")
    done = s.mon.wait_event("failover.finished", after=mark)
    assert done["data"]["status"] == "succeeded", done
    mark = s.mon.last_id()
    lab_repair(s.lab.dir, "dc1", "db")
    return mark


def kill_dc1(s: Shared) -> tuple[int, float]:
    mark = s.mon.last_id()
    lab_break(s.lab.dir, "dc1", "db")
    # measured once dc1 is dead: a write acknowledged just before the kill may be lost
    # (replication is asynchronous); every one acknowledged afterwards must be on dc2
    killed_at = time.time()
    return mark, killed_at


def writable_at_dc2_and_suspended(s: Shared, probe: WriteProbe, killed_at: float) -> None:
    """The service takes writes at dc2 (every one acknowledged since the kill is there),
    and automatic failback is suspended with the reason shown."""
    wait_for("writes acknowledged after the kill", lambda: probe.stats.acked_ids(since=killed_at))
    wait_for("dc2 active", lambda: status_doc(s.lab)["active_site"] == "dc2")
    assert lab_status(s.lab.dir)["router"]["write_target"] == "dc2"
    after = probe.stats.acked_ids(since=killed_at)
    assert on_site(s.lab, "dc2", after) == set(after), "writes after the kill are not on dc2"
    wait_for(
        "automatic failback suspended",
        lambda: monitor_doc(s.lab)["failback"]["code"] == "suspended",
    )
    doc = monitor_doc(s.lab)
    assert doc["auto_failback"]["enabled"] is False
    assert doc["failback"]["reason"].startswith("suspended: flapped at"), doc["failback"]
    assert doc["running"] and doc["state"] == "running"
    assert "suspended: flapped at" in run_cli("status", "-c", str(s.lab.config)).stdout


def home_after_auto_enable(s: Shared) -> None:
    """dc1 repaired stays fenced and the service stays at dc2 (suspended) until a person
    enables automatic failback again; then it comes home."""
    mark = s.mon.last_id()
    lab_repair(s.lab.dir, "dc1", "db")
    fenced = s.mon.wait_event("stale_primary.fenced", after=mark)
    assert fenced["data"]["site"] == "dc1"

    def settled() -> dict[str, Any] | None:
        # dc1 can pass before the fence run has ended: its document says "busy" until
        # the monitor's next tick after that run (a moment), never "starting a failback"
        doc = monitor_doc(s.lab)
        passing = doc["health"]["db@dc1"]["status"] == "passing"
        return doc if passing and doc["failback"]["code"] != "busy" else None

    doc = wait_for("dc1 passing again, no run in progress", settled)
    assert doc["failback"]["code"] == "suspended", doc["failback"]
    assert status_doc(s.lab)["active_site"] == "dc2"
    assert not [e for e in s.mon.events("failback.started") if e["id"] > mark]
    enable = run_cli(
        "auto", "enable", "--yes", SERVICE, "--reason", "repaired", "-c", str(s.lab.config)
    )
    assert enable.returncode == 0, enable.stderr
    done = s.mon.wait_event("failback.finished", after=mark, timeout=120)
    assert done["data"]["status"] == "succeeded", done
    s.lab.wait_home_end_state()


def nothing_lost(probe: WriteProbe, stats: ProbeStats) -> None:
    acked = stats.acked_ids()
    assert len(acked) > 100
    assert probe.missing(acked) == [], "acknowledged writes lost in synchronous mode"


def failback_run_id(s: Shared, after: int) -> int:
    started = s.mon.wait_event("failback.started", after=after, timeout=120)
    return int(started["run_id"])


# --------------------------------------------------------------------------- cases


def test_primary_dies_during_the_observation_window(shared: Shared) -> None:
    """The window watches the new primary: it dies, the run switches back by unplanned
    failover to dc2 (re-protected a moment before), nothing acknowledged is lost."""
    s = shared
    probe = start_writer(s)
    try:
        mark = fail_over_then_repair(s)
        run_id = failback_run_id(s, mark)
        observing = s.mon.wait_event("run.observing", after=mark, timeout=120)

        def zero_loss_on_dc1() -> bool:
            return any(
                e["data"].get("primary") == "dc1"
                for e in s.mon.events("sync.zero_loss")
                if e["id"] > observing["id"]
            )

        # the monitor keeps the new primary in zero-loss mode during the window
        wait_for("zero-loss mode on dc1 in the window", zero_loss_on_dc1, timeout=30)
        assert run_row(s.lab, run_id)["status"] == "observing", "window over too early"
        _, killed_at = kill_dc1(s)
        ended = s.mon.wait_event("failback.rolled_back", after=observing["id"], timeout=120)
        assert ended["run_id"] == run_id
        assert "switching back by unplanned failover" in ended["message"], ended
        writable_at_dc2_and_suspended(s, probe, killed_at)
        report = s.lab.run_show(run_id)["run"]
        lost = next(m for m in report["measurements"] if m["name"] == "possible_loss_bytes")
        assert lost["value"] == 0, lost  # zero-loss mode: the standby had everything
        steps = {st["id"]: st["status"] for st in report["steps"]}
        assert steps["observe"] == "reverted"
        assert steps["back-promote-dc2"] == "done" and "back-stop-dc1" not in steps
        assert status_doc(s.lab)["needs_resync"] == ["dc1"]
        home_after_auto_enable(s)
    finally:
        stats = probe.stop()
    nothing_lost(probe, stats)


def test_primary_dies_just_after_the_failback_commits(shared: Shared) -> None:
    """The failure begins as the run ends: the monitor fails over as soon as the run
    releases the service, with the same policy as any failure (issue 10: it used to wait
    for the site to pass and fail again, and never did)."""
    s = shared
    probe = start_writer(s)
    try:
        mark = fail_over_then_repair(s)
        run_id = failback_run_id(s, mark)
        s.mon.wait_event("run.committed", after=mark, timeout=120)
        kill_mark, killed_at = kill_dc1(s)
        failover = s.mon.wait_event("failover.finished", after=kill_mark)
        assert failover["data"]["status"] == "succeeded", failover
        assert run_row(s.lab, run_id)["status"] == "succeeded"  # it did commit first
        writable_at_dc2_and_suspended(s, probe, killed_at)
        home_after_auto_enable(s)
    finally:
        stats = probe.stop()
    nothing_lost(probe, stats)


def test_primary_dies_while_the_failback_waits_at_its_stability_gate(shared: Shared) -> None:
    """dc1 dies while the monitor's failback waits at its stability gate: the monitor
    aborts its own run (before its point of no return) instead of letting it wait for a
    site that just proved unstable, and suspends automatic failback."""
    s = shared
    probe = start_writer(s)
    try:
        s.go.unlink()
        s.once.touch()  # the failback's precheck passes once; its stability gate waits
        mark = fail_over_then_repair(s)
        run_id = failback_run_id(s, mark)
        wait_for(
            "the failback waiting at its stability gate",
            lambda: (
                run_row(s.lab, run_id)["steps"].get("stability") == "applying"
                and not s.once.exists()
            ),
        )
        _, killed_at = kill_dc1(s)
        aborting = s.mon.wait_event("failback.aborting", after=mark)
        assert aborting["run_id"] == run_id
        wait_for("the failback aborted", lambda: run_row(s.lab, run_id)["status"] == "aborted")
        writable_at_dc2_and_suspended(s, probe, killed_at)
        assert run_row(s.lab, run_id)["steps"]["resync-dc1"] == "pending"
        s.go.touch()
        home_after_auto_enable(s)
    finally:
        s.go.touch()
        stats = probe.stop()
    nothing_lost(probe, stats)


def test_primary_dies_while_no_monitor_runs_and_its_failback_commits(shared: Shared) -> None:
    """The monitor dies (SIGKILL) in its failback's observation window, then dc1 dies.
    The next monitor continues its own run (promise 3); the run commits, as its window
    is over; the failure of dc1 began while the run held the service and is acted on as
    soon as the run ends: failover, flap damping, no acknowledged write lost."""
    s = shared
    probe = start_writer(s)
    try:
        mark = fail_over_then_repair(s)
        run_id = failback_run_id(s, mark)
        observing = s.mon.wait_event("run.observing", after=mark, timeout=120)
        wait_for(
            "zero-loss mode on dc1 in the window",
            lambda: any(
                e["data"].get("primary") == "dc1"
                for e in s.mon.events("sync.zero_loss")
                if e["id"] > observing["id"]
            ),
            timeout=30,
        )
        s.mon.proc.send_signal(signal.SIGKILL)
        s.mon.proc.wait(timeout=30)
        assert run_row(s.lab, run_id)["status"] == "observing"
        _, killed_at = kill_dc1(s)
        until = float(observing["data"]["undo_until"])
        wait_for("the observation window over", lambda: time.time() > until, timeout=60)
        mark = s.mon.last_id()
        s.mon = spawn_monitor(s.lab)
        resumed = s.mon.wait_event("run.resumed_by_monitor", after=mark)
        assert resumed["run_id"] == run_id
        failover = s.mon.wait_event("failover.finished", after=mark)
        assert failover["data"]["status"] == "succeeded", failover
        assert run_row(s.lab, run_id)["status"] == "succeeded"
        writable_at_dc2_and_suspended(s, probe, killed_at)
        home_after_auto_enable(s)
    finally:
        stats = probe.stop()
    nothing_lost(probe, stats)


def test_active_site_dies_while_a_persons_failback_waits_for_approval(shared: Shared) -> None:
    """A failure is acted on when the run holding the service stops at a gate: a person's
    failback waits for approval (before its point of no return) when dc2, the active
    site, dies. The monitor aborts that run and fails over to dc1, which the failback
    had resynced (a safe target again); nothing acknowledged is lost.

    Last of this file: it leaves the service at dc1 with dc2 down."""
    s = shared
    s.go.touch()  # dc1's declared check passes (the stability-gate case took it away)
    probe = start_writer(s)
    try:
        cfg = str(s.lab.config)
        disable = run_cli("auto", "disable", "--yes", SERVICE, "--reason", "by hand", "-c", cfg)
        assert disable.returncode == 0, disable.stderr
        mark = fail_over_then_repair(s)
        s.mon.wait_event("stale_primary.fenced", after=mark)
        wait_for(
            "dc1 passing again",
            lambda: monitor_doc(s.lab)["health"]["db@dc1"]["status"] == "passing",
        )
        doc = yaml.safe_load(s.lab.config.read_text())
        doc["services"][SERVICE]["policy"]["approval"] = "required"
        by_hand = s.lab.dir / "approval.yaml"
        by_hand.write_text(yaml.safe_dump(doc, sort_keys=False))
        waiting = run_cli("failback", SERVICE, "--yes", "--json", "-c", str(by_hand), timeout=180)
        assert waiting.returncode == 3, waiting.stdout + waiting.stderr
        run_id = int(waiting.json()["run_id"])
        assert status_doc(s.lab)["needs_resync"] == []  # dc1 resynced and streaming

        mark = s.mon.last_id()
        lab_break(s.lab.dir, "dc2", "db")
        killed_at = time.time()  # once dc2 is dead (see kill_dc1)
        aborting = s.mon.wait_event("failback.aborting", after=mark)
        assert aborting["run_id"] == run_id
        failover = s.mon.wait_event("failover.finished", after=mark, timeout=120)
        assert failover["data"]["status"] == "succeeded", failover
        assert run_row(s.lab, run_id)["status"] == "aborted"
        wait_for("dc1 active", lambda: status_doc(s.lab)["active_site"] == "dc1")
        wait_for("writes after the kill", lambda: probe.stats.acked_ids(since=killed_at))
        assert lab_status(s.lab.dir)["router"]["write_target"] == "dc1"
        after = probe.stats.acked_ids(since=killed_at)
        assert on_site(s.lab, "dc1", after) == set(after)
    finally:
        stats = probe.stop()
    nothing_lost(probe, stats)
