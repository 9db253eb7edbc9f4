"""Issue 9 item 2: a command that times out, or whose runner dies, leaves no process.

Through the real CLI with the ``command`` driver. Each command forks a subshell that
sleeps and then writes a line (``(sleep 2; echo fenced >> $E) | cat``): killing only
the shell, as ``subprocess.run(timeout=...)`` does, lets that subshell write after the
step was recorded failed and its undo ran. Every sleep carries a unique duration so
the test can look for it in /proc.

Needs no server (no ``integration`` marker): only the CLI and shell commands run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

from tests.conftest import failback_argv, run_cli


def _unique_sleep(seconds: int) -> str:
    """``sleep`` with a fractional part no other process on the machine uses."""
    return f"{seconds}.{uuid.uuid4().int % 10**6:06d}"


def live_processes_with(needle: str) -> list[str]:
    """Command lines (not zombies: they run no code) that contain ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and needle in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


def write_topology(tmp: Path, *, fence: str, fence_check: str | None = None,
                   fence_timeout: str = "1s", observe: str | None = None) -> Path:  # fmt: skip
    effects = tmp / "effects.log"
    effects.touch()
    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()

    def site(name: str, extra: str = "") -> str:
        return textwrap.indent(
            textwrap.dedent(f"""\
            observe: {observe or f'"test -f {tmp}/{name}.up"'!s}
            promote: "echo promote@{name} >> $E"
            unfence: "echo unfence@{name} >> $E"
            """)
            + extra,
            " " * 12,
        )

    check = f"\n  check: {fence_check!r}" if fence_check else ""
    fence_block = f"""\
fence:
  run: {fence!r}{check}
  undo: "echo unfenced >> $E"
  timeout: {fence_timeout}
"""
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
        options:
          timeout: 20s
          env: {{E: "{effects}"}}
        sites:
          dc1:
{site("dc1", fence_block)}
          dc2:
{site("dc2")}
    policy:
      approval: none
      stability_window: 200ms
"""
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def failover(config: Path) -> dict:
    result = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.json()


def test_timed_out_fence_leaves_no_process_to_write_after_its_undo(tmp_path: Path) -> None:
    nap = _unique_sleep(2)
    config = write_topology(tmp_path, fence=f"(sleep {nap}; echo fenced >> $E) | cat")
    outcome = failover(config)
    assert outcome["status"] == "rolled-back", outcome
    assert effects(tmp_path)[-1] == "unfenced"
    assert live_processes_with(f"sleep {nap}") == []
    time.sleep(3)  # past the moment the orphan would have written
    assert "fenced" not in effects(tmp_path), effects(tmp_path)
    assert effects(tmp_path)[-1] == "unfenced"
    assert live_processes_with(f"sleep {nap}") == []


def test_timed_out_check_leaves_no_process(tmp_path: Path) -> None:
    nap = _unique_sleep(2)
    config = write_topology(
        tmp_path,
        fence="echo fence@dc1 >> $E",
        fence_check=f"(sleep {nap}; echo checked >> $E) | cat; exit 1",
    )
    outcome = failover(config)  # the check times out before the fence and after it
    assert outcome["status"] == "rolled-back", outcome
    assert "check after apply: timed out" in outcome["error"]
    assert live_processes_with(f"sleep {nap}") == []
    time.sleep(3)
    assert "checked" not in effects(tmp_path), effects(tmp_path)
    assert live_processes_with(f"sleep {nap}") == []


def test_timed_out_observation_leaves_no_process(tmp_path: Path) -> None:
    nap = _unique_sleep(30)
    config = write_topology(tmp_path, fence="true")
    text = config.read_text().replace(
        "vip:\n        driver: command\n        options:\n          timeout: 20s",
        "vip:\n        driver: command\n        options:\n          timeout: 1s",
    )
    text = text.replace(
        f'observe: "test -f {tmp_path}/dc1.up"',
        f'observe: "(sleep {nap}; echo observed >> $E) | cat"',
    )
    config.write_text(text)
    started = time.monotonic()
    result = run_cli("status", "-c", str(config), "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert time.monotonic() - started < 25  # the observation did not wait for the sleep
    assert live_processes_with(f"sleep {nap}") == []
    assert "observed" not in effects(tmp_path)


def test_runner_killed_mid_command_takes_the_whole_command_with_it(tmp_path: Path) -> None:
    """SIGKILL of failback: ``setpriv --pdeathsig`` alone kills only the shell."""
    nap = _unique_sleep(2)
    config = write_topology(
        tmp_path,
        fence=f"echo started >> $E; (sleep {nap}; echo fenced >> $E) | cat",
        fence_timeout="20s",
    )
    proc = subprocess.Popen(
        failback_argv("failover", "app", "--planned", "-c", str(config), "--yes", "--json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while "started" not in effects(tmp_path):
        assert time.monotonic() < deadline, "the fence command never started"
        time.sleep(0.01)
    assert live_processes_with(f"sleep {nap}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while live_processes_with(f"sleep {nap}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live_processes_with(f"sleep {nap}") == []
    time.sleep(2.5)
    assert "fenced" not in effects(tmp_path), effects(tmp_path)


def test_a_daemon_started_by_a_finished_command_keeps_running(tmp_path: Path) -> None:
    """The other side of the promise: only a command that did not finish is killed."""
    nap = _unique_sleep(30)
    config = write_topology(
        tmp_path, fence=f"nohup sleep {nap} >/dev/null 2>&1 & echo fence@dc1 >> $E"
    )
    outcome = failover(config)
    assert outcome["status"] == "succeeded", outcome
    try:
        time.sleep(0.3)
        assert live_processes_with(f"sleep {nap}"), "the background process was killed"
    finally:
        for line in live_processes_with(f"sleep {nap}"):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
