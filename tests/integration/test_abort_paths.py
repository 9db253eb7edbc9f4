"""`failback abort` in every situation executor.abort() distinguishes (issue 11, item 1).

Needs no server: the service is driven by the ``command`` driver, and every action
appends a line to an effects file, so each test reads exactly what was applied and
undone, and in which order. A step can be *held*: its command writes a start marker
and then waits until the test creates a release file. That is how the runner is
caught inside a chosen step (a state, not a moment in time): the kill or the abort
lands exactly there, and each test asserts where it landed before going on.

Situations, as in ``Executor.abort``: the runner died before the point of no return
(undo), past it (refused with the next step; ``--force`` ends it without undo), the
run is still executing in another process (the request is journaled and that process
undoes it; past the point of no return it is refused and the run carries on), and
that process dies while the abort waits for it (the abort takes over).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, failback_argv, run_cli

SITES = ("dc1", "dc2")
ACTIONS = ("fence", "promote", "unfence", "sync", "verify")


def write_topology(tmp: Path, *, hold: str | None = None, stability: str = "100ms") -> Path:
    """One command component ``vip`` at dc1 and dc2; ``hold`` names an action
    (``promote@dc1``) whose command waits for ``tmp/release`` before its effect."""
    effects = tmp / "effects.log"
    effects.touch()

    def action(name: str, site: str) -> str:
        marker = f"{name}@{site}"
        run = f"echo {marker} >> {effects}"
        if marker == hold:
            run = (
                f"echo start-{marker} >> {effects}; "
                f"while [ ! -e {tmp}/release ]; do sleep 0.02; done; {run}"
            )
        return "\n".join(
            [
                f"{name}:",
                f"  run: '{run}'",
                f"  check: 'grep -qx {marker} {effects}'",
                f"  undo: 'echo undo-{marker} >> {effects}'",
                # a process killed inside the undo (after its marker) is not undone twice
                f"  undo_check: 'grep -qx undo-{marker} {effects}'",
                "  timeout: 120s",
            ]
        )

    def site_block(site: str) -> str:
        parts = [f"observe: 'test -f {tmp}/{site}.up'"] + [action(a, site) for a in ACTIONS]
        return textwrap.indent("\n".join(parts), " " * 12)

    for site in SITES:
        (tmp / f"{site}.up").touch()
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
        options: {{timeout: 120s}}
        sites:
          dc1:
{site_block("dc1")}
          dc2:
{site_block("dc2")}
    policy:
      approval: none
      stability_window: {stability}
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def cli(config: Path, *args: str) -> CliResult:
    return run_cli(*args, "-c", str(config))


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def journal(tmp: Path) -> sqlite3.Connection:
    """The run journal, read-only (the state directory defaults to ./state of the file)."""
    (path,) = tmp.rglob("journal.sqlite3")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def step_statuses(tmp: Path, run_id: int) -> dict[str, tuple[str, str | None]]:
    with contextlib.closing(journal(tmp)) as db:
        rows = db.execute(
            "SELECT step_id, status, undo_status FROM steps WHERE run_id = ? ORDER BY idx",
            (run_id,),
        ).fetchall()
    return {str(s): (str(st), u) for s, st, u in rows}


def event_kinds(tmp: Path, run_id: int) -> list[str]:
    with contextlib.closing(journal(tmp)) as db:
        rows = db.execute("SELECT kind FROM events WHERE run_id = ? ORDER BY id", (run_id,))
        return [str(r[0]) for r in rows.fetchall()]


def fail_over(config: Path, tmp: Path) -> int:
    """Planned failover to dc2; returns how many effects it left (the failback's start)."""
    result = cli(config, "failover", "app", "--planned", "--yes", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return len(effects(tmp))


STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """A failing test must not leave a runner or an aborter behind."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        failback_argv(*args, "-c", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(proc)
    return proc


def failback_held_in(config: Path, tmp: Path, marker: str) -> tuple[subprocess.Popen[str], int]:
    """Start ``failback app`` and wait until it is inside the held step ``marker``."""
    runner = start(config, "failback", "app", "--yes", "--json")
    wait_for(f"{marker} to start", lambda: f"start-{marker}" in effects(tmp))
    run_id = int(cli(config, "runs", "--json").json()["runs"][0]["id"])
    step = "-vip-".join(marker.split("@"))
    assert step_statuses(tmp, run_id)[step][0] == "applying", step_statuses(tmp, run_id)
    return runner, run_id


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def service(config: Path) -> dict[str, Any]:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(result.json()["services"][0])


def listed(config: Path, run_id: int) -> dict[str, Any]:
    runs = cli(config, "runs", "--json").json()["runs"]
    return dict(next(r for r in runs if r["id"] == run_id))


# --------------------------------------------------------------------------- dead runner


def test_abort_after_the_runner_died_before_the_point_of_no_return(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="fence@dc2")
    before = fail_over(config, tmp_path)
    runner, run_id = failback_held_in(config, tmp_path, "fence@dc2")
    kill(runner)
    # where the kill landed: inside the fence, before its effect; the run is interrupted
    assert effects(tmp_path)[before:] == ["sync@dc1", "start-fence@dc2"]
    assert listed(config, run_id)["status"] == "interrupted"

    aborted = cli(config, "abort", str(run_id), "--yes", "--json")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    doc = aborted.json()
    assert doc["status"] == "aborted", doc
    # the interrupted fence may have acted: its undo runs too, then the sync's, newest first
    assert effects(tmp_path)[before:] == [
        "sync@dc1",
        "start-fence@dc2",
        "undo-fence@dc2",
        "undo-sync@dc1",
    ]
    # promise 4: the aborted run's report says what happened and why
    report = doc["report"]
    assert report["status"] == "aborted"
    assert report["rollback"]["reason"] == "aborted by request"
    assert report["rollback"]["ending"] == "aborted"
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["fence-vip-dc2"]["undo"] == steps["sync-vip-dc1"]["undo"] == "undone"
    assert (
        steps["promote-vip-dc1"]["status"] == "pending" and steps["promote-vip-dc1"]["undo"] is None
    )
    shown = cli(config, "run", "show", str(run_id), "--json").json()["run"]
    assert shown["status"] == "aborted" and shown["rollback"]["reason"] == "aborted by request"
    status = service(config)
    assert status["active_site"] == "dc2" and status["current_run"] is None
    # nothing is left to continue, and the service can move again
    again = cli(config, "abort", str(run_id), "--yes")
    assert again.returncode == 2 and "already aborted" in again.stderr, again.stderr


def test_abort_past_the_point_of_no_return_is_refused_then_forced(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="promote@dc1")
    before = fail_over(config, tmp_path)
    runner, run_id = failback_held_in(config, tmp_path, "promote@dc1")
    kill(runner)
    killed_at = effects(tmp_path)
    assert killed_at[before:] == ["sync@dc1", "fence@dc2", "start-promote@dc1"]

    refused = cli(config, "abort", str(run_id), "--yes", "--json")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    answer = refused.json()
    assert answer["kind"] == "SafetyRefusal"
    assert "point of no return (promote-vip-dc1)" in answer["error"]
    # the documented next step: finish it, or end it without undo
    assert f"failback resume {run_id}" in answer["hint"]
    assert "failback abort --force" in answer["hint"]
    assert effects(tmp_path) == killed_at  # refused: nothing undone
    assert listed(config, run_id)["status"] == "interrupted"
    assert service(config)["current_run"]["id"] == run_id  # still holds the service

    forced = cli(config, "abort", str(run_id), "--force", "--yes", "--json")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    doc = forced.json()
    assert doc["status"] == "aborted" and "forced" in doc["error"], doc
    assert effects(tmp_path) == killed_at  # --force ends the run without any undo
    assert all(s["undo"] is None for s in doc["report"]["steps"]), doc["report"]["steps"]
    assert service(config)["current_run"] is None  # the lock is released


# --------------------------------------------------------------------------- live runner


def test_abort_of_a_run_executing_in_another_process(tmp_path: Path) -> None:
    """The abort is journaled; the runner notices it while its step's command still
    runs, kills that command (its whole process group: nobody waits for it to end),
    and undoes. The held command never takes effect, not even once released."""
    config = write_topology(tmp_path, hold="sync@dc1")
    before = fail_over(config, tmp_path)
    runner, run_id = failback_held_in(config, tmp_path, "sync@dc1")
    assert _held_commands(tmp_path), "the held command is not running"
    aborter = start(config, "abort", str(run_id), "--yes", "--json")
    out, err = aborter.communicate(timeout=120)  # never released: the abort stops it
    assert aborter.returncode == 0, out + err
    assert json.loads(out)["status"] == "aborted"
    runner_out, runner_err = runner.communicate(timeout=60)
    assert runner.returncode == 1, runner_out + runner_err
    assert '"aborted"' in runner_out
    assert _held_commands(tmp_path) == [], "the cancelled command is still running"
    (tmp_path / "release").touch()
    time.sleep(0.3)
    # the sync was cancelled before its effect; its undo ran; nothing went further
    assert effects(tmp_path)[before:] == ["start-sync@dc1", "undo-sync@dc1"]
    steps = step_statuses(tmp_path, run_id)
    assert steps["sync-vip-dc1"][1] == "undone", steps
    assert steps["promote-vip-dc1"] == ("pending", None), steps
    assert "run.abort_requested" in event_kinds(tmp_path, run_id)
    assert service(config)["current_run"] is None


def _held_commands(tmp: Path) -> list[int]:
    """PIDs of processes whose command line waits for ``tmp/release``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"{tmp}/release" in cmdline:
            found.append(int(entry.name))
    return found


def test_abort_falls_back_to_undoing_itself_when_the_runner_dies(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="sync@dc1")
    before = fail_over(config, tmp_path)
    runner, run_id = failback_held_in(config, tmp_path, "sync@dc1")
    aborter = start(config, "abort", str(run_id), "--yes", "--json")
    wait_for("the abort request", lambda: "run.abort_requested" in event_kinds(tmp_path, run_id))
    assert aborter.poll() is None
    kill(runner)  # dies while the abort waits for it (its held command dies with it)
    out, err = aborter.communicate(timeout=120)
    assert aborter.returncode == 0, out + err
    doc = json.loads(out)
    assert doc["status"] == "aborted", doc
    # the sync never took effect, yet it was applying: its undo ran, by the aborter
    assert effects(tmp_path)[before:] == ["start-sync@dc1", "undo-sync@dc1"]
    assert step_statuses(tmp_path, run_id)["sync-vip-dc1"] == ("applying", "undone")
    assert service(config)["current_run"] is None


def test_abort_of_a_live_run_past_the_point_of_no_return_is_refused(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="promote@dc1")
    before = fail_over(config, tmp_path)
    runner, run_id = failback_held_in(config, tmp_path, "promote@dc1")
    refused = cli(config, "abort", str(run_id), "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "passed its point of no return (promote-vip-dc1)" in refused.stderr
    assert "observation window" in refused.stderr  # the hint: when an abort is possible
    assert "run.abort_requested" not in event_kinds(tmp_path, run_id)
    (tmp_path / "release").touch()
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, out + err
    assert not [e for e in effects(tmp_path)[before:] if e.startswith("undo-")]
    assert service(config)["active_site"] == "dc1"
