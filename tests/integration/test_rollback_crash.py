"""A crash during an undo never turns into a forward run; an effect is never applied twice.

The service is driven by the ``command`` driver (two components, so the undo path has
several steps): every action appends a line to an effects file, so the test can read
exactly what happened and in which order. The runner is killed with SIGKILL through
the real CLI at each step of the *undo* path (forward-path kills are in
test_engine_crash.py), then ``resume`` and ``abort`` are tried as a person would.

Needs no server (no ``integration`` marker): only the CLI and shell commands run.
"""

from __future__ import annotations

import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import failback_argv, run_cli

COMPONENTS = ("vip", "app")


def write_topology(
    tmp: Path,
    *,
    undo_slow: float = 0.0,
    fail_once: str | None = None,
    no_check: str | None = None,
    slow: dict[str, float] | None = None,
    timeouts: dict[str, str] | None = None,
    components: tuple[str, ...] = COMPONENTS,
) -> Path:
    """Two command components at dc1 and dc2; ``fail_once`` names an action
    (``fence-app@dc2``) whose first run exits 7; ``no_check`` one without a check."""
    effects = tmp / "effects.log"
    effects.touch()
    if fail_once:
        (tmp / "fail-once").touch()
    slow = slow or {}
    timeouts = timeouts or {}

    def action(name: str, comp: str, site: str) -> str:
        marker = f"{name}-{comp}@{site}"
        run = f"sleep {slow[marker]}; " if marker in slow else ""
        if marker in slow:  # a slow action says when it started: tests kill inside it
            run = f"echo start-{marker} >> {effects}; {run}"
        run += f"echo {marker} >> {effects}"
        if fail_once == marker:
            run = f"if [ -e {tmp}/fail-once ]; then rm {tmp}/fail-once; exit 7; fi; {run}"
        undo = f"echo undo-start-{marker} >> {effects}; sleep {undo_slow}; "
        undo += f"echo undo-{marker} >> {effects}"
        lines = [f"{name}:", f"  run: '{run}'", f"  undo: '{undo}'"]
        if no_check != marker:
            lines.append(f"  check: 'grep -qx {marker} {effects}'")
        if marker in timeouts:
            lines.append(f"  timeout: {timeouts[marker]}")
        return "\n".join(lines)

    def component(comp: str) -> str:
        blocks = []
        for site in ("dc1", "dc2"):
            parts = [f"observe: 'test -f {tmp}/{site}.up'"]
            parts += [action(n, comp, site) for n in ("fence", "promote", "unfence", "sync")]
            blocks.append(f"{site}:\n" + textwrap.indent("\n".join(parts), "  "))
        body = "driver: command\noptions: {timeout: 20s}\nsites:\n"
        body += textwrap.indent("\n".join(blocks), "  ")
        return f"{comp}:\n" + textwrap.indent(body, "  ")

    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()
    comps = textwrap.indent("\n".join(component(c) for c in components), " " * 6)
    text = f"""\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
{comps}
    policy:
      approval: none
      stability_window: 100ms
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def cli(config: Path, *args: str) -> Any:
    return run_cli(*args, "-c", str(config))


def run_doc(config: Path, run_id: int) -> dict[str, Any]:
    result = cli(config, "run", "show", str(run_id), "--json")
    assert result.returncode == 0, result.stderr
    return dict(result.json()["run"])


def steps_of(config: Path, run_id: int) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in run_doc(config, run_id)["steps"]}


def listed_status(config: Path, run_id: int) -> str:
    runs = cli(config, "runs", "--json").json()["runs"]
    return str(next(r for r in runs if r["id"] == run_id)["status"])


def service_doc(config: Path) -> dict[str, Any]:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    return dict(result.json()["services"][0])


def fail_over(config: Path, tmp: Path) -> int:
    result = cli(config, "failover", "app", "--planned", "--yes", "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    return len(effects(tmp))


def start_failback(config: Path) -> subprocess.Popen[bytes]:
    """``failback failback app`` in its own process, to be killed."""
    return subprocess.Popen(
        failback_argv("failback", "app", "-c", str(config), "--yes", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_at(proc: subprocess.Popen[bytes], tmp: Path, config: Path, line: str) -> int:
    """SIGKILL ``proc`` once ``line`` is in the effects file; the newest run's id."""
    wait_for(line, lambda: line in effects(tmp))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return int(cli(config, "runs", "--json").json()["runs"][0]["id"])


def wait_for(what: str, predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def net_state(lines: list[str]) -> dict[str, int]:
    """How many times each forward effect is in place: applied minus undone."""
    state: dict[str, int] = {}
    for line in lines:
        if line.startswith(("undo-start-", "start-")):
            continue
        if line.startswith("undo-"):
            key = line.removeprefix("undo-")  # the undo of a step that failed half-way
            state[key] = max(0, state.get(key, 0) - 1)  # may run with nothing to undo
        else:
            state[line] = state.get(line, 0) + 1
    return {k: v for k, v in state.items() if v}


# the undo path of a failback whose fence of app at dc2 failed: newest first
UNDO_PATH = ["fence-app@dc2", "fence-vip@dc2", "sync-app@dc1", "sync-vip@dc1"]


@pytest.mark.parametrize("killed_in", UNDO_PATH)
def test_sigkill_during_undo_never_resumes_forward(tmp_path: Path, killed_in: str) -> None:
    """Kill the runner inside each undo; resume is refused, abort finishes the undo.

    On the old engine, resume continued *forward* (the failing fence succeeds the second
    time), counted the undone fences as done, and ended ``succeeded`` with dc1 promoted
    while the vip at dc2 was unfenced again.
    """
    config = write_topology(tmp_path, undo_slow=1.0, fail_once="fence-app@dc2")
    before = fail_over(config, tmp_path)
    run_id = kill_at(start_failback(config), tmp_path, config, f"undo-start-{killed_in}")
    killed_at = list(effects(tmp_path))

    # where the kill landed: inside that undo, journaled as such before it acted
    steps = steps_of(config, run_id)
    step_id = killed_in.replace("@", "-")
    assert steps[step_id]["undo"] == "undoing", steps[step_id]
    assert f"undo-{killed_in}" not in killed_at  # the kill landed before the undo's effect
    assert listed_status(config, run_id) == "interrupted"
    assert run_doc(config, run_id)["rollback"]["ending"] == "rolled-back"

    # resume forward is refused, clearly, and changes nothing
    resumed = cli(config, "resume", "--yes", str(run_id))
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "rolling back" in resumed.stderr and f"failback abort {run_id}" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert effects(tmp_path) == killed_at

    # abort finishes the undo: every forward effect of the failback is undone
    aborted = cli(config, "abort", str(run_id), "--yes", "--json")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert aborted.json()["status"] == "rolled-back"
    failback_effects = effects(tmp_path)[before:]
    forward = [e for e in failback_effects if not e.startswith(("undo-", "start-"))]
    assert forward == ["sync-vip@dc1", "sync-app@dc1", "fence-vip@dc2"]  # nothing after
    assert net_state(failback_effects) == {}
    status = service_doc(config)
    assert status["active_site"] == "dc2" and status["current_run"] is None
    # the service can move again: a new failback runs (the fence works this time)
    again = cli(config, "failback", "app", "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr


def test_abort_interrupted_during_its_undo_is_finished_by_abort(tmp_path: Path) -> None:
    """An abort (not a failure) killed mid-undo ends ``aborted`` after a second abort."""
    config = write_topology(tmp_path, undo_slow=1.0, slow={"fence-vip@dc2": 30})
    before = fail_over(config, tmp_path)
    # killed inside the fence: the run is interrupted forward
    run_id = kill_at(start_failback(config), tmp_path, config, "start-fence-vip@dc2")
    assert steps_of(config, run_id)["fence-vip-dc2"]["status"] == "applying"
    aborter = subprocess.Popen(
        failback_argv("abort", str(run_id), "-c", str(config), "--yes", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for("undo of sync-app", lambda: "undo-start-sync-app@dc1" in effects(tmp_path))
    aborter.send_signal(signal.SIGKILL)
    aborter.wait()
    assert listed_status(config, run_id) == "interrupted"
    refused = cli(config, "resume", "--yes", str(run_id))
    assert refused.returncode == 2 and "abort" in refused.stderr
    finished = cli(config, "abort", str(run_id), "--yes", "--json")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert finished.json()["status"] == "aborted"
    assert net_state(effects(tmp_path)[before:]) == {}


def test_step_without_check_killed_while_applying_waits_for_a_person(tmp_path: Path) -> None:
    """No check: resume cannot tell whether the effect happened, so it asks; approve
    applies it again (once), and the run finishes."""
    marker = "fence-vip@dc2"
    config = write_topology(tmp_path, no_check=marker, slow={marker: 1.0})
    before = fail_over(config, tmp_path)
    proc = start_failback(config)
    run_id = kill_at(proc, tmp_path, config, "start-fence-vip@dc2")
    assert marker not in effects(tmp_path)[before:]  # the kill landed inside the command
    assert steps_of(config, run_id)["fence-vip-dc2"]["status"] == "applying"

    resumed = cli(config, "resume", "--yes", str(run_id), "--json")
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    doc = resumed.json()
    assert doc["status"] == "waiting-approval"
    assert "no check" in doc["error"] and "approve" in doc["error"]
    assert marker not in effects(tmp_path)[before:]  # not re-applied blindly

    approved = cli(config, "approve", "--yes", str(run_id), "--json")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approved.json()["status"] == "succeeded"
    assert effects(tmp_path)[before:].count(marker) == 1


def test_step_without_check_killed_while_applying_can_be_aborted(tmp_path: Path) -> None:
    """The person may also decide to undo: abort runs that step's undo (it may have
    taken effect) and every earlier one."""
    marker = "fence-vip@dc2"
    config = write_topology(tmp_path, no_check=marker, slow={marker: 1.0})
    before = fail_over(config, tmp_path)
    proc = start_failback(config)
    run_id = kill_at(proc, tmp_path, config, "start-fence-vip@dc2")
    assert steps_of(config, run_id)["fence-vip-dc2"]["status"] == "applying"
    assert cli(config, "resume", "--yes", str(run_id)).returncode == 3
    aborted = cli(config, "abort", str(run_id), "--yes", "--json")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert aborted.json()["status"] == "aborted"
    tail = effects(tmp_path)[before:]
    assert f"undo-{marker}" in tail and "undo-sync-vip@dc1" in tail
    assert marker not in tail  # never applied again


def test_validate_warns_about_mutating_command_without_check(tmp_path: Path) -> None:
    config = write_topology(tmp_path, no_check="fence-vip@dc2")
    result = cli(config, "validate")
    assert result.returncode == 0, result.stderr
    assert "check" in result.stderr and "fence" in result.stderr


def test_resume_reload_continues_with_the_edited_timeout(tmp_path: Path) -> None:
    """A step past the point of no return times out; the hint says to raise the timeout;
    resume notices the edit, and only ``--reload`` uses it."""
    marker = "unfence-vip@dc1"
    config = write_topology(tmp_path, slow={marker: 1.5}, timeouts={marker: "500ms"})
    fail_over(config, tmp_path)
    failed = cli(config, "failback", "app", "--yes", "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    doc = failed.json()
    run_id = doc["run_id"]
    assert doc["status"] == "failed" and "timed out" in doc["error"]
    assert "--reload" in (doc["hint"] or "") or "--reload" in str(
        steps_of(config, run_id)["unfence-vip-dc1"]
    )
    config.write_text(config.read_text().replace("timeout: 500ms", "timeout: 10s"))

    plain = cli(config, "resume", "--yes", str(run_id), "--json")
    assert plain.returncode == 1, plain.stdout + plain.stderr
    assert "changed since run" in plain.stderr and "--reload" in plain.stderr
    assert plain.json()["status"] == "failed"  # the saved copy still says 500ms

    reloaded = cli(config, "resume", "--yes", str(run_id), "--reload", "--json")
    assert reloaded.returncode == 0, reloaded.stdout + reloaded.stderr
    assert reloaded.json()["status"] == "succeeded"
    assert service_doc(config)["active_site"] == "dc1"


def test_resume_reload_refuses_a_file_the_remaining_steps_do_not_fit(tmp_path: Path) -> None:
    marker = "unfence-app@dc1"
    config = write_topology(tmp_path, slow={marker: 1.5}, timeouts={marker: "500ms"})
    fail_over(config, tmp_path)
    failed = cli(config, "failback", "app", "--yes", "--json")
    run_id = failed.json()["run_id"]
    assert failed.json()["status"] == "failed"
    saved = run_doc(config, run_id)
    # the edit drops the app component, which the remaining steps still need
    write_topology(tmp_path, components=("vip",))
    refused = cli(config, "resume", "--yes", str(run_id), "--reload")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "cannot continue with the edited topology" in refused.stderr
    assert "app" in refused.stderr and "Traceback" not in refused.stderr
    after = run_doc(config, run_id)
    assert after["status"] == saved["status"] == "failed"
    assert [s["status"] for s in after["steps"]] == [s["status"] for s in saved["steps"]]


def test_api_resume_of_a_run_that_began_undoing_is_refused(tmp_path: Path) -> None:
    """The HTTP API keeps the same rule as the CLI: 409 pointing at abort; abort finishes."""
    import httpx

    from failback.api import ApiServer, resolve_settings
    from failback.config import load_topology

    config = write_topology(tmp_path, undo_slow=1.0, fail_once="fence-app@dc2")
    before = fail_over(config, tmp_path)
    run_id = kill_at(start_failback(config), tmp_path, config, "undo-start-sync-app@dc1")
    token = "rollback-api-token-2f9c41"
    settings = resolve_settings(
        load_topology(config), listen="127.0.0.1:0", environ={"FAILBACK_API_TOKEN": token}
    )
    server = ApiServer(settings, log_level="warning").start()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            refused = client.post(f"/api/v1/runs/{run_id}/resume", headers=headers)
            assert refused.status_code == 409, refused.text
            body = refused.json()
            assert "rolling back" in body["error"] and "abort" in body["hint"]
            aborted = client.post(f"/api/v1/runs/{run_id}/abort", headers=headers, json={})
            assert aborted.status_code == 200, aborted.text
            assert aborted.json()["status"] == "rolled-back"
    finally:
        server.stop()
    assert net_state(effects(tmp_path)[before:]) == {}


@pytest.mark.parametrize("command", ["run show", "resume", "abort", "approve"])
def test_a_run_id_beyond_64_bits_is_no_run(tmp_path: Path, command: str) -> None:
    """Bad input (promise 5): the clear "no run" error, never an OverflowError traceback."""
    config = write_topology(tmp_path)
    extra = ("--yes",) if command != "run show" else ()
    result = cli(config, *command.split(), "99999999999999999999999", *extra)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no run 99999999999999999999999" in result.stderr
    assert "Traceback" not in result.stderr
