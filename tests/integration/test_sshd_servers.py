"""The sshd servers tests and labs start: the throwaway one leaves nothing behind, and
the netns lab's command line is one OpenSSH 9.2 accepts, keep-alives included."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from failback.lab import sshd as lab_sshd
from failback.lab.netns_plan import make_plan
from tests.integration.sshd import SSHD, running_sshd, skip_unless_sshd, start_sshd

pytestmark = pytest.mark.integration


def sshd_processes_in(directory: Path) -> list[int]:
    """sshd processes whose command line names ``directory`` (its host key is there).

    By executable, not by command line: sshd rewrites its own ("sshd: /usr/sbin/sshd
    -D ... [listener]")."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if exe == SSHD and str(directory).encode() in cmdline:
            found.append(int(entry))
    return found


def test_an_sshd_that_cannot_start_leaves_no_directory(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="sshd did not start"),
        running_sshd(options=["NoSuchOption=yes"], parent=tmp_path),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


class Interrupted(Exception):
    """What a Ctrl-C or a test timeout raises in the middle of the wait."""


def test_an_interrupted_start_leaves_no_sshd_running(tmp_path: Path) -> None:
    """LogLevel=ERROR hides "Server listening", so start_sshd waits; a signal handler
    raises in that wait (as Ctrl-C would) once sshd runs."""
    skip_unless_sshd()
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")

    def interrupt(signum: int, frame: object) -> None:
        if sshd_processes_in(tmp_path):
            raise Interrupted
        signal.setitimer(signal.ITIMER_REAL, 0.1)  # sshd not started yet: try again

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Interrupted):
            start_sshd(tmp_path, [], ["LogLevel=ERROR"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sshd_processes_in(tmp_path) == []


def test_the_lab_sshd_command_line_is_valid_and_keeps_clients_alive(tmp_path: Path) -> None:
    """``sshd -T`` (extended test mode) parses the lab's exact options and prints the
    configuration it would run with."""
    skip_unless_sshd()
    plan = make_plan(tmp_path, ipaddress.IPv4Network("10.211.254.0/24"))
    files = lab_sshd.prepare(tmp_path, plan)
    argv = lab_sshd.sshd_argv(files, plan, "dc1")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    checked = subprocess.run([*argv, "-T"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    effective = dict(line.split(" ", 1) for line in checked.stdout.splitlines() if " " in line)
    assert effective["clientaliveinterval"] == str(lab_sshd.CLIENT_ALIVE_INTERVAL_S)
    assert effective["clientalivecountmax"] == str(lab_sshd.CLIENT_ALIVE_COUNT)
    assert effective["listenaddress"].startswith(plan.host("dc1").address)
