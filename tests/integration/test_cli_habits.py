"""CLI habits (issue 17, item 1): global options before the command, --yes everywhere
something changes, ``run show --follow``.

Needs no server: the service is driven by the ``command`` driver (see
test_abort_paths.py), whose steps can be held on a release file, so a run is caught
in a chosen state rather than at a moment in time. Every command runs as its own
process with stdin a pipe, never a terminal, as in a script or CI job.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult, failback_argv, run_cli
from tests.integration.test_abort_paths import effects, journal, wait_for, write_topology
from tests.integration.test_engine_crash import write_topology as gated_topology

STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


def no_tty(*args: str) -> CliResult:
    """``failback ARGS`` with stdin an empty pipe: nobody can answer a question."""
    return run_cli(*args, input_text="")


def start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        failback_argv(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(proc)
    return proc


def all_events(tmp: Path) -> list[tuple[int, str]]:
    with contextlib.closing(journal(tmp)) as db:
        return [(int(i), str(k)) for i, k in db.execute("SELECT id, kind FROM events")]


def runs(config: Path) -> list[dict[str, object]]:
    return list(run_cli("runs", "-c", str(config), "--json").json()["runs"])


# --------------------------------------------------------------------- global options


def roles(result: CliResult) -> list[tuple[str, str, str, bool]]:
    """What `status --json` says of each component, without the observation times."""
    return [
        (s["active_site"], c["component"], c["site"], c["healthy"])
        for s in result.json()["services"]
        for c in s["components"]
    ]


def test_global_options_before_the_command_work_as_after_it(tmp_path: Path) -> None:
    config = write_topology(tmp_path)
    after = run_cli("status", "-c", str(config), "--json")
    before = run_cli("-c", str(config), "--json", "status")
    mixed = run_cli("--json", "status", "--config", str(config))
    assert after.returncode == before.returncode == mixed.returncode == 0, before.stderr
    assert before.json()["services"][0]["active_site"] == "dc1"
    for other in (before, mixed):
        assert roles(other) == roles(after)
    moved = run_cli("-c", str(config), "--json", "failover", "app", "--planned", "--yes")
    assert moved.returncode == 0, moved.stderr
    state_dir = next(tmp_path.rglob("journal.sqlite3")).parent
    listed = run_cli("--state-dir", str(state_dir), "--json", "runs")
    assert [r["status"] for r in listed.json()["runs"]] == ["succeeded"]
    nested = run_cli("--state-dir", str(state_dir), "run", "show", "1", "--json")
    assert nested.json()["run"]["status"] == "succeeded"


def test_the_same_option_twice_with_two_values_is_a_usage_error(tmp_path: Path) -> None:
    config = write_topology(tmp_path)
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text())
    clash = run_cli("-c", str(config), "failover", "app", "--planned", "--yes", "-c", str(other))
    assert clash.returncode == 2
    assert clash.stderr.splitlines()[0] == (
        f"error: -c/--config given twice: {config} before the command, {other} after it"
    )
    assert "hint: give -c/--config once" in clash.stderr and "Traceback" not in clash.stderr
    assert runs(config) == [] and effects(tmp_path) == []
    same = run_cli("-c", str(config), "status", "-c", str(config), "--json")
    assert same.returncode == 0, same.stderr


def test_a_global_option_the_command_does_not_take_is_refused(tmp_path: Path) -> None:
    result = run_cli("--state-dir", str(tmp_path / "state"), "lab", "status")
    assert result.returncode == 2
    assert "error: --state-dir does not apply to `failback lab status`" in result.stderr
    assert not (tmp_path / "state").exists()
    shown = run_cli("-c", "x.yaml", "lab", "status", "--help")
    assert shown.returncode == 0 and "--dir" in shown.stdout


def test_help_lists_the_global_options() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--config", "--state-dir", "--json"):
        assert flag in result.stdout


# ------------------------------------------------------------------------------- --yes


def test_every_changing_command_refuses_without_yes_and_without_a_terminal(
    tmp_path: Path,
) -> None:
    config = gated_topology(tmp_path, approval="required", slow=0)
    c = str(config)
    assert run_cli("failover", "app", "--planned", "-c", c, "--yes").returncode == 0
    waiting = run_cli("failback", "app", "-c", c, "--yes", "--json")
    assert waiting.returncode == 3, waiting.stderr
    run_id = str(waiting.json()["run_id"])
    done, logged = effects(tmp_path), all_events(tmp_path)
    refused = {
        "failover": ("failover", "app", "--force"),
        "failback": ("failback", "app"),
        "approve": ("approve", run_id),
        "resume": ("resume", run_id),
        "abort": ("abort", run_id),
        "auto enable": ("auto", "enable", "app"),
        "auto disable": ("auto", "disable", "app"),
        "incident mark": ("incident", "mark", "app"),
        "incident clear": ("incident", "clear", "app"),
    }
    for name, args in refused.items():
        result = no_tty(*args, "-c", c)
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert lines[-2].startswith("error: not confirmed: "), (name, lines)
        assert lines[-1] == "hint: add --yes (-y) to confirm non-interactively", (name, lines)
        assert "Traceback" not in result.stderr
    # nothing changed: no effect, not one event (no mark, no switch), the run still waits
    assert effects(tmp_path) == done
    assert all_events(tmp_path) == logged
    assert runs(config)[0]["status"] == "waiting-approval"
    approved = no_tty("approve", run_id, "-c", c, "--yes", "--json")
    assert approved.returncode == 0, approved.stderr
    assert approved.json()["status"] == "succeeded"
    # an ended run: nothing to confirm; said at once, without asking, and nothing changes
    done, logged = effects(tmp_path), all_events(tmp_path)
    for verb in ("resume", "abort"):
        ended = no_tty(verb, run_id, "-c", c)
        assert ended.returncode == 2, (verb, ended.stdout, ended.stderr)
        assert ended.stderr.splitlines()[0] == f"error: run {run_id} is already succeeded"
        assert "not confirmed" not in ended.stderr and "Traceback" not in ended.stderr
    assert effects(tmp_path) == done and all_events(tmp_path) == logged


def test_json_refusal_is_one_document(tmp_path: Path) -> None:
    config = write_topology(tmp_path)
    result = no_tty("--json", "-c", str(config), "auto", "disable", "app")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["kind"] == "UsageError" and "--yes" in doc["hint"]


# ---------------------------------------------------------------------- run show --follow


def test_follow_streams_a_run_until_it_ends_then_exits_with_its_code(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="promote@dc1")
    c = str(config)
    assert run_cli("failover", "app", "--planned", "-c", c, "--yes").returncode == 0
    runner = start("failback", "app", "-c", c, "--yes", "--json")
    wait_for("the held promote", lambda: "start-promote@dc1" in effects(tmp_path))
    run_id = int(runs(config)[0]["id"])  # type: ignore[call-overload]
    follower = start("-c", c, "--json", "run", "show", str(run_id), "--follow")
    assert follower.stdout is not None
    seen: list[dict[str, object]] = []
    for line in follower.stdout:  # what happened so far, then the held step
        seen.append(json.loads(line))
        if seen[-1] == {**seen[-1], "step_id": "promote-vip-dc1", "status": "applying"}:
            break
    assert follower.poll() is None, "following must wait while the run is held"
    (tmp_path / "release").touch()
    rest = [json.loads(line) for line in follower.stdout]
    assert follower.wait(timeout=60) == 0
    assert runner.wait(timeout=60) == 0
    lines = seen + rest
    assert lines[0]["type"] == "event" and lines[0]["kind"] == "failback.created"
    assert lines[-1] == {"type": "end", "run_id": run_id, "status": "succeeded",
                         "exit_code": 0, "error": None, "hint": None}  # fmt: skip
    done = [line["step_id"] for line in lines if line.get("status") == "done"]
    assert done[-1] == "record" and "promote-vip-dc1" in done
    assert any(line.get("kind") == "failback.succeeded" for line in rest)
    assert all(line.get("run_id") == run_id for line in lines)


def test_follow_exits_3_on_a_run_waiting_for_approval(tmp_path: Path) -> None:
    config = gated_topology(tmp_path, approval="required", slow=0)
    c = str(config)
    assert run_cli("failover", "app", "--planned", "-c", c, "--yes").returncode == 0
    run_id = run_cli("failback", "app", "-c", c, "--yes", "--json").json()["run_id"]
    followed = run_cli("run", "show", str(run_id), "--follow", "-c", c)
    assert followed.returncode == 3, followed.stderr
    assert f"run {run_id} waiting-approval" in followed.stdout
    assert f"failback approve {run_id}" in followed.stdout
    finished = run_cli("run", "show", "1", "-f", "-c", c)
    assert finished.returncode == 0 and "run 1 succeeded" in finished.stdout
    unknown = run_cli("run", "show", "42", "-f", "-c", c)
    assert unknown.returncode == 2 and "no run 42" in unknown.stderr


def test_ctrl_c_stops_following_not_the_run(tmp_path: Path) -> None:
    config = write_topology(tmp_path, hold="promote@dc1")
    c = str(config)
    assert run_cli("failover", "app", "--planned", "-c", c, "--yes").returncode == 0
    runner = start("failback", "app", "-c", c, "--yes", "--json")
    wait_for("the held promote", lambda: "start-promote@dc1" in effects(tmp_path))
    run_id = int(runs(config)[0]["id"])  # type: ignore[call-overload]
    follower = start("run", "show", str(run_id), "--follow", "-c", c)
    assert follower.stdout is not None
    for line in follower.stdout:
        if "promote vip at dc1: applying" in line:
            break
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=60)
    assert follower.returncode == 130
    assert f"stopped following run {run_id}; the run itself goes on" in err
    assert "Traceback" not in err
    assert runs(config)[0]["status"] == "running"
    (tmp_path / "release").touch()
    assert runner.wait(timeout=60) == 0
    assert runs(config)[0]["status"] == "succeeded"


# -------------------------------------------------------------------------- completion


def test_shell_completion_through_typer() -> None:
    """The script typer prints calls back `failback` with _FAILBACK_COMPLETE set; the
    answers come from the commands' own options, the global ones included."""
    script = run_cli("--show-completion", "bash")
    assert script.returncode == 0, script.stderr
    assert "_FAILBACK_COMPLETE=complete_bash" in script.stdout

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_FAILBACK_COMPLETE": "complete_bash", "COMP_WORDS": line,
               "COMP_CWORD": str(len(words) - 1)}  # fmt: skip
        result = run_cli(env=env)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("failback ru") == ["runs", "run"]
    assert complete("failback run show --f") == ["--follow"]
    assert "--state-dir" in complete("failback -c x.yaml --")
    assert "--yes" in complete("failback resume 3 --y")
