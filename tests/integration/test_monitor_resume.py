"""Which interrupted runs the monitor continues, and whether ``status`` says it is alive.

Issue 9 item 1: the monitor continues the runs it started, never a person's (it used to
resume every interrupted run at start-up, turning a person's decision into its own).
Issue 10: ``failback status`` says whether the monitor is alive (its process exists and
it reports), not only that it once started.

The service is driven by the ``command`` driver (no PostgreSQL needed): every action
appends one line to an effects file and has a check command, so the test counts how
many times each effect happened. The monitor and the CLI are real processes, killed
with SIGKILL as a crash would.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import failback_argv, run_cli
from tests.integration.test_monitor import wait_for

pytestmark = pytest.mark.integration

SLOW = 0.4


def write_topology(tmp: Path) -> Path:
    effects = tmp / "effects.log"
    effects.touch()

    def action(name: str, site: str) -> str:
        marker = f"{name}@{site}"
        return "\n".join([
            f"{name}:",
            f'  run: "sleep {SLOW}; echo {marker} >> {effects}"',
            f'  check: "grep -qx {marker} {effects}"',
        ])  # fmt: skip

    def site_block(site: str) -> str:
        parts = [f'observe: "test -f {tmp}/{site}.up"']
        parts += [action(name, site) for name in ("fence", "promote", "unfence", "verify")]
        return textwrap.indent("\n".join(parts), " " * 12)

    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()
    path = tmp / "failback.yaml"
    path.write_text(f"""\
state_dir: {tmp}/state
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
      failover: automatic
      detection: {{interval: 200ms, timeout: 1s, failure_threshold: 2}}
""")
    return path


def effects(tmp: Path) -> list[str]:
    return (tmp / "effects.log").read_text().split()


def monitor_state(config: Path) -> dict[str, Any]:
    result = run_cli("status", "app", "--json", "-c", str(config), timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(result.json()["services"][0])


def events(tmp: Path, kind: str) -> list[dict[str, Any]]:
    log = tmp / "events.jsonl"
    if not log.exists():
        return []
    found = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if event["kind"] == kind:
                found.append(event)
    return found


@contextlib.contextmanager
def monitor(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    tmp = config.parent
    proc = subprocess.Popen(
        failback_argv("monitor", "-c", str(config), "--log-file", str(tmp / "events.jsonl")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("monitor started", lambda: [e for e in events(tmp, "monitor.started")
                                             if e["data"]["pid"] == proc.pid])  # fmt: skip
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def runs(config: Path) -> list[dict[str, Any]]:
    result = run_cli("runs", "-c", str(config), "--json")
    assert result.returncode == 0, result.stderr
    return list(result.json()["runs"])


def wait_for_effect(tmp: Path, marker: str) -> None:
    wait_for(f"effect {marker}", lambda: marker in effects(tmp), timeout=30)


def test_the_monitor_leaves_a_persons_interrupted_run_to_that_person(tmp_path: Path) -> None:
    """A person's failover is SIGKILLed mid-way; a monitor started afterwards reports it
    ("a person decides") and does not continue it, even across several of its cycles."""
    config = write_topology(tmp_path)
    person = subprocess.Popen(
        failback_argv("failover", "app", "--planned", "--yes", "-c", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_effect(tmp_path, "fence@dc1")
    person.send_signal(signal.SIGKILL)
    person.wait(timeout=30)
    (run,) = runs(config)
    before = effects(tmp_path)
    with monitor(config):
        (event,) = wait_for("run.interrupted", lambda: events(tmp_path, "run.interrupted"))
        expected = f"run {run['id']} was interrupted; a person decides: failback resume " + (
            f"{run['id']} / abort {run['id']}"
        )
        assert event["message"] == expected and event["run_id"] == run["id"]
        seen = wait_for(
            "the monitor reporting the run",
            lambda: (
                (doc := monitor_state(config))["monitor"]["failover"]
                and doc["monitor"]["failover"]["code"] == "interrupted"
                and doc
            ),
        )
        assert seen["monitor"]["failover"]["reason"] == expected
        heartbeat = seen["monitor"]["heartbeat"]
        # several cycles later, still nobody's run but the person's: untouched
        wait_for(
            "three more reports of the monitor",
            lambda: monitor_state(config)["monitor"]["heartbeat"] > heartbeat + 3,
        )
        assert not events(tmp_path, "run.resumed_by_monitor")
        assert effects(tmp_path) == before
        assert monitor_state(config)["current_run"]["status"] == "interrupted"
    # the person decides
    resumed = run_cli("resume", "--yes", str(run["id"]), "-c", str(config), "--json")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert effects(tmp_path) == ["fence@dc1", "promote@dc2", "unfence@dc2", "verify@dc2"]


def test_the_monitor_continues_its_own_run_and_status_says_when_it_is_dead(
    tmp_path: Path,
) -> None:
    """The monitor's own failover is interrupted by the monitor's death (SIGKILL):
    ``status`` says the monitor is gone at once, and the next monitor continues the run
    to its end, each effect applied once. A stopped (SIGTERM) monitor is shown stopped,
    a frozen one (SIGSTOP) as not reporting."""
    config = write_topology(tmp_path)
    with monitor(config) as first:
        wait_for("running", lambda: monitor_state(config)["monitor"]["state"] == "running")
        (tmp_path / "dc1.up").unlink()
        wait_for_effect(tmp_path, "fence@dc1")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        doc = monitor_state(config)["monitor"]
        assert doc["running"] is False and doc["state"] == "dead", doc
        shown = run_cli("status", "-c", str(config)).stdout
        assert f"monitor: NOT running: process {first.pid} is gone" in shown, shown
    (run,) = runs(config)
    with monitor(config) as second:
        (resumed,) = wait_for(
            "run.resumed_by_monitor", lambda: events(tmp_path, "run.resumed_by_monitor")
        )
        assert resumed["run_id"] == run["id"]
        wait_for("the run succeeded", lambda: runs(config)[0]["status"] == "succeeded")
        assert effects(tmp_path) == ["fence@dc1", "promote@dc2", "unfence@dc2", "verify@dc2"]
        assert monitor_state(config)["active_site"] == "dc2"
        # frozen: its PID exists, it does not report
        second.send_signal(signal.SIGSTOP)
        try:
            wait_for("stalled", lambda: monitor_state(config)["monitor"]["state"] == "stalled")
            shown = run_cli("status", "-c", str(config)).stdout
            assert f"monitor: NOT working: process {second.pid} exists" in shown, shown
        finally:
            second.send_signal(signal.SIGCONT)
        wait_for("running again", lambda: monitor_state(config)["monitor"]["running"])
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0
    doc = monitor_state(config)["monitor"]
    assert doc["state"] == "stopped" and doc["running"] is False, doc
    assert doc["stopped_at"] is not None
