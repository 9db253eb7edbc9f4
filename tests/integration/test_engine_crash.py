"""The engine's durability promise, proven with the real CLI and SIGKILL.

Needs no server (no ``integration`` marker): the service is driven by the ``command``
driver, and every action appends one line to an effects file, so the test can count
how many times each effect happened. Every action has a check command (grep for its
line) which is what lets a resumed run skip an effect that happened before the crash.

A kill meant to land *inside* a step holds that step: its command writes a start
marker and waits for a release file the test never creates, so the kill lands there
whatever the machine's load, and each test asserts where it landed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from failback.config import load_topology
from failback.engine.executor import Executor
from failback.model.plan import Plan, StepSpec
from failback.store import open_journal
from tests.conftest import failback_argv, run_cli

SLOW = 0.4


def write_topology(
    tmp: Path,
    *,
    approval: str = "none",
    slow: float = SLOW,
    fail_action: str | None = None,
    hold: str | None = None,
) -> Path:
    """``hold`` names an action whose command writes ``start-ACTION@SITE`` and then
    waits for ``tmp/release`` before its effect."""
    effects = tmp / "effects.log"
    effects.touch()

    def action(name: str, site: str, undo: bool = True) -> str:
        marker = f"{name}@{site}"
        cmd = f"sleep {slow}; echo {marker} >> {effects}"
        if hold == marker:
            cmd = (
                f"echo start-{marker} >> {effects}; "
                f"while [ ! -e {tmp}/release ]; do sleep 0.02; done; echo {marker} >> {effects}"
            )
        if fail_action == marker:
            cmd = f"echo failing {marker} >&2; exit 7"
        lines = [f"{name}:", f'  run: "{cmd}"', f'  check: "grep -qx {marker} {effects}"']
        if undo:
            lines.append(f'  undo: "echo undo-{marker} >> {effects}"')
        return "\n".join(lines)

    def site_block(site: str) -> str:
        parts = [f'observe: "test -f {tmp}/{site}.up"']
        for name in ("fence", "promote", "unfence", "sync", "verify"):
            parts.append(action(name, site))
        return textwrap.indent("\n".join(parts), " " * 12)

    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()
    text = f"""\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
      vip:
        driver: command
        options: {{timeout: 20s}}
        sites:
          dc1:
{site_block("dc1")}
          dc2:
{site_block("dc2")}
    policy:
      approval: {approval}
      stability_window: 200ms
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


def effects(tmp: Path) -> list[str]:
    """The effects that happened (start markers of held steps left out)."""
    return [e for e in (tmp / "effects.log").read_text().split() if not e.startswith("start-")]


def started(tmp: Path, marker: str) -> bool:
    return f"start-{marker}" in (tmp / "effects.log").read_text().split()


def step_statuses(config: Path, run_id: int) -> dict[str, str]:
    show = run_cli("run", "show", str(run_id), "-c", str(config), "--json").json()
    return {s["id"]: s["status"] for s in show["run"]["steps"]}


def processes_mentioning(tmp: Path) -> list[int]:
    """Live processes whose command line names the test's directory (held commands)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(tmp) in argv and "failback.cli.main" not in argv and state != "Z":
            found.append(int(entry.name))
    return found


def fail_over(config: Path) -> None:
    result = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.json()["status"] == "succeeded"


def start_failback(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        failback_argv("failback", "app", "-c", str(config), "--yes", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_effect(tmp: Path, marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in effects(tmp):
            return
        time.sleep(0.005)
    raise AssertionError(f"{marker} never happened; effects: {effects(tmp)}")


def latest_run_id(config: Path) -> int:
    result = run_cli("runs", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return int(result.json()["runs"][0]["id"])


FAILBACK_EFFECTS = ["sync@dc1", "fence@dc2", "promote@dc1", "unfence@dc1", "verify@dc1"]


def test_failover_then_failback_applies_each_effect_once(tmp_path: Path) -> None:
    config = write_topology(tmp_path, slow=0)
    fail_over(config)
    assert effects(tmp_path) == ["fence@dc1", "promote@dc2", "unfence@dc2", "verify@dc2"]
    result = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    assert result.returncode == 0, result.stderr
    report = result.json()["report"]
    assert report["status"] == "succeeded"
    assert [s["status"] for s in report["steps"]].count("failed") == 0
    assert effects(tmp_path)[4:] == FAILBACK_EFFECTS
    status = run_cli("status", "-c", str(config), "--json").json()
    assert status["services"][0]["active_site"] == "dc1"


@pytest.mark.parametrize("kill_after", ["sync@dc1", "fence@dc2", "promote@dc1"])
def test_sigkill_between_steps_then_resume(tmp_path: Path, kill_after: str) -> None:
    """Kill the runner right after an effect landed (before or after its journal entry)."""
    config = write_topology(tmp_path)
    fail_over(config)
    proc = start_failback(config)
    wait_for_effect(tmp_path, kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = latest_run_id(config)
    # where the kill landed: after this effect, before the next one (each sleeps first)
    landed = effects(tmp_path)[4:]
    assert landed == FAILBACK_EFFECTS[: FAILBACK_EFFECTS.index(kill_after) + 1], landed
    step = "-vip-".join(kill_after.split("@"))
    at_kill = step_statuses(config, run_id)
    print(f"killed after {kill_after}: {step} was {at_kill[step]}")
    assert at_kill[step] in ("applying", "verifying", "done"), at_kill
    listed = run_cli("runs", "-c", str(config), "--json").json()["runs"][0]
    assert listed["status"] == "interrupted"
    resumed = run_cli("resume", "--yes", str(run_id), "-c", str(config), "--json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert resumed.json()["status"] == "succeeded"
    failback_effects = effects(tmp_path)[4:]
    for marker in FAILBACK_EFFECTS:
        assert failback_effects.count(marker) == 1, failback_effects
    assert failback_effects == FAILBACK_EFFECTS


def wait_for_start(tmp: Path, marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not started(tmp, marker):
        assert time.monotonic() < deadline, f"{marker} never started: {effects(tmp)}"
        time.sleep(0.005)


def kill_held(proc: subprocess.Popen[str], tmp: Path) -> None:
    """SIGKILL the runner, wait until its held command is gone too, then release the
    hold: a command that outlived the runner would now write its effect."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while processes_mentioning(tmp) and time.monotonic() < deadline:
        time.sleep(0.01)
    orphans = processes_mentioning(tmp)
    (tmp / "release").touch()  # also ends an orphan, so a failing test leaves none behind
    assert not orphans, f"commands outlived the runner that started them: {orphans}"


def test_sigkill_inside_a_step_then_resume(tmp_path: Path) -> None:
    """Kill while promote@dc1's command is half-way: it must run exactly once in the end."""
    config = write_topology(tmp_path, slow=0, hold="promote@dc1")
    fail_over(config)
    proc = start_failback(config)
    wait_for_start(tmp_path, "promote@dc1")
    kill_held(proc, tmp_path)
    assert "promote@dc1" not in effects(tmp_path)
    run_id = latest_run_id(config)
    assert step_statuses(config, run_id)["promote-vip-dc1"] == "applying"
    resumed = run_cli("resume", "--yes", str(run_id), "-c", str(config), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert effects(tmp_path)[4:] == FAILBACK_EFFECTS


def test_second_run_is_refused_while_one_holds_the_service(tmp_path: Path) -> None:
    config = write_topology(tmp_path, approval="required", slow=0)
    fail_over(config)
    first = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    assert first.returncode == 3, first.stderr
    run_id = first.json()["run_id"]
    second = run_cli("failback", "app", "-c", str(config), "--yes")
    assert second.returncode == 2
    assert f"locked by run {run_id}" in second.stderr
    assert "Traceback" not in second.stderr


def test_approval_gate_waits_then_approve_continues(tmp_path: Path) -> None:
    config = write_topology(tmp_path, approval="required", slow=0)
    fail_over(config)
    waiting = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    assert waiting.returncode == 3
    run_id = waiting.json()["run_id"]
    assert waiting.json()["status"] == "waiting-approval"
    # nothing past the gate happened: only the resync ran
    assert effects(tmp_path)[4:] == ["sync@dc1"]
    approved = run_cli("approve", "--yes", str(run_id), "-c", str(config), "--json")
    assert approved.returncode == 0, approved.stderr
    assert approved.json()["status"] == "succeeded"
    assert effects(tmp_path)[4:] == FAILBACK_EFFECTS
    again = run_cli("approve", "--yes", str(run_id), "-c", str(config))
    assert again.returncode == 2 and "not waiting for approval" in again.stderr


def test_abort_at_gate_undoes_applied_steps(tmp_path: Path) -> None:
    config = write_topology(tmp_path, approval="required", slow=0)
    fail_over(config)
    waiting = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    run_id = waiting.json()["run_id"]
    aborted = run_cli("abort", str(run_id), "-c", str(config), "--yes", "--json")
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.json()["status"] == "aborted"
    assert effects(tmp_path)[4:] == ["sync@dc1", "undo-sync@dc1"]
    # the lock is released: a new failback may start
    status = run_cli("status", "-c", str(config), "--json").json()["services"][0]
    assert status["current_run"] is None
    assert status["active_site"] == "dc2"


def test_failure_before_point_of_no_return_rolls_back(tmp_path: Path) -> None:
    config = write_topology(tmp_path, slow=0, fail_action="promote@dc1")
    fail_over(config)
    result = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    assert result.returncode == 1
    doc = result.json()
    # promote is the point of no return: its failure cannot be rolled back blindly
    assert doc["status"] == "failed"
    assert "exit status 7" in doc["error"]


def test_failure_of_fence_rolls_back(tmp_path: Path) -> None:
    config = write_topology(tmp_path, slow=0, fail_action="fence@dc2")
    fail_over(config)
    result = run_cli("failback", "app", "-c", str(config), "--yes", "--json")
    assert result.returncode == 1
    doc = result.json()
    assert doc["status"] == "rolled-back"
    assert "exit status 7" in doc["error"]
    # the failed step may have half-applied, so its undo runs too, newest first
    assert effects(tmp_path)[4:] == ["sync@dc1", "undo-fence@dc2", "undo-sync@dc1"]


def test_resume_of_unknown_run_is_a_clear_error(tmp_path: Path) -> None:
    config = write_topology(tmp_path, slow=0)
    result = run_cli("resume", "--yes", "42", "-c", str(config))
    assert result.returncode == 2
    assert "no run 42" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_group_kill_leaves_no_double_effect(tmp_path: Path) -> None:
    """SIGKILL during sync (the first effect): resume finishes with each effect once."""
    config = write_topology(tmp_path, slow=0, hold="sync@dc1")
    fail_over(config)
    proc = start_failback(config)
    wait_for_start(tmp_path, "sync@dc1")
    kill_held(proc, tmp_path)
    run_id = latest_run_id(config)
    assert "sync@dc1" not in effects(tmp_path)  # the kill landed inside the sync
    assert step_statuses(config, run_id)["sync-vip-dc1"] == "applying"
    resumed = run_cli("resume", "--yes", str(run_id), "-c", str(config), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert effects(tmp_path)[4:] == FAILBACK_EFFECTS


@pytest.mark.parametrize("never_undone", [True, False])
def test_a_step_marked_undo_false_is_never_undone(tmp_path: Path, never_undone: bool) -> None:
    """``undo: false`` in a step's params is the engine's rule (a fence run's steps carry
    it: undoing them would send clients back to a stale primary): a rollback skips that
    step and undoes the others. Without the mark the same step is undone (the control)."""
    config = write_topology(tmp_path, slow=0, fail_action="unfence@dc1")
    topology = load_topology(config)

    def step(action: str, site: str, **params: Any) -> StepSpec:
        return StepSpec(
            id=f"{action}-{site}", title=f"{action} at {site}", action="command.run",
            component="vip", site=site, params={"action": action, **params},
        )  # fmt: skip

    fence_params = {"undo": False} if never_undone else {}
    plan = Plan(
        service="app", kind="failback", from_site="dc2", to_site="dc1",
        steps=[step("fence", "dc2", **fence_params), step("sync", "dc1"),
               step("unfence", "dc1")],
    )  # fmt: skip
    journal = open_journal(topology.state_dir)
    try:
        executor = Executor(journal)
        outcome = executor.execute(executor.create(topology, plan))
    finally:
        journal.close()
    assert outcome.status == "rolled-back"
    undone = [e for e in effects(tmp_path) if e.startswith("undo-")]
    if never_undone:
        assert undone == ["undo-unfence@dc1", "undo-sync@dc1"]
    else:
        assert undone == ["undo-unfence@dc1", "undo-sync@dc1", "undo-fence@dc2"]
