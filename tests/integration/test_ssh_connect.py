"""Reaching a machine over SSH, and every way it can fail, against real sshd servers.

Each failure is provoked for real (an empty known_hosts, another host key, a key
sshd does not know, a closed port, a server that never speaks, a missing python3, a
sudo that refuses) and must come back as ``HostUnreachable`` with the right ``kind``
and a one-line message naming the host. A jump host is a second sshd on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.hosts import HostError, HostUnreachable, LocalHost, SshHost, SshTarget
from failback.hosts.check import check
from failback.hosts.ssh_errors import KINDS
from tests.conftest import run_cli
from tests.integration.sshd import Sshd, keygen, running_sshd

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    with running_sshd() as server:
        yield server


@pytest.fixture(scope="module")
def bastion() -> Iterator[Sshd]:
    """The jump host: another sshd, with its own host key and client key."""
    with running_sshd() as server:
        yield server


def failure(target: SshTarget) -> HostUnreachable:
    host = SshHost(target)
    try:
        with pytest.raises(HostUnreachable) as caught:
            host.run(["true"])
    finally:
        host.close()
    error = caught.value
    assert str(error).startswith(f"host {target.name}: ")
    assert "\n" not in error.message and error.hint
    assert not isinstance(error, OSError)
    return error


def test_the_default_remote_python_and_identity(sshd: Sshd) -> None:
    """``python3`` as the login shell finds it (not the test's pinned interpreter)."""
    with SshHost(sshd.target(python="python3")) as host:
        hello = host.identity
        assert hello["user"] == "root" and hello["uid"] == 0
        assert hello["hostname"] == os.uname().nodename
        assert hello["agent_version"] >= 1
        assert host.run(["echo", "ok"]).stdout == "ok\n"


def test_known_hosts_file_pins_the_key(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known hosts %d"  # a space and a %-token must be taken literally
    known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n")
    with SshHost(sshd.target(host_key=None, known_hosts_file=str(known))) as host:
        assert host.run(["true"]).ok
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_key}\n", "left untouched"


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    error = failure(sshd.target(host_key=None, known_hosts_file=str(empty)))
    assert error.kind == "unknown-host-key"
    assert f"[127.0.0.1]:{sshd.port}" in (error.hint or "")
    assert empty.read_text() == "", "a host key is never added"


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_host_key")
    error = failure(sshd.target(host_key=other))
    assert error.kind == "changed-host-key"
    assert "HAS CHANGED" in error.message


def test_wrong_key_and_wrong_user_are_auth_failures(sshd: Sshd, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    keygen(stranger)
    error = failure(sshd.target(key_file=str(stranger)))
    assert error.kind == "auth"
    secret = stranger.read_text()
    body = "".join(secret.splitlines()[1:-1])
    assert body[:40] not in str(error) and body[:40] not in (error.hint or ""), "key leaked"
    assert failure(sshd.target(user="no-such-user")).kind == "auth"


def test_closed_port_is_refused(sshd: Sshd) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = failure(sshd.target(port=port))
    assert error.kind == "refused"
    assert f"port {port}" in error.message


def test_a_server_that_never_answers_times_out(sshd: Sshd) -> None:
    with socket.socket() as silent:  # accepts (backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        error = failure(sshd.target(port=silent.getsockname()[1], connect_timeout=1.0))
    assert error.kind == "timeout"


def test_missing_python_is_named(sshd: Sshd) -> None:
    error = failure(sshd.target(python="python3-not-installed"))
    assert error.kind == "no-python"
    assert "python3-not-installed" in error.message


def test_too_old_python_is_named(sshd: Sshd) -> None:
    old = os.path.expanduser("~/.pyenv/versions/3.8.18/bin/python3")
    if not os.path.exists(old):
        pytest.skip("no Python 3.8 interpreter on this machine to play an old remote")
    error = failure(sshd.target(python=old))
    assert error.kind == "no-python" and "3.8.18" in error.message


def test_a_failed_attempt_is_reported_then_retried_on_the_next_call(sshd: Sshd) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    host = SshHost(sshd.target(port=port))
    for _ in range(2):  # each call makes one attempt of its own
        with pytest.raises(HostUnreachable):
            host.exists("/")
    assert host.connections == 0
    found = check(host)
    assert not found.reachable and found.kind == "refused" and found.hint


def test_hostile_target_values_are_refused_before_ssh_runs(sshd: Sshd) -> None:
    for bad in (
        {"address": "-oProxyCommand=touch /tmp/x"},
        {"address": "root@127.0.0.1"},
        {"address": "a b"},
        {"user": "-oProxyCommand=x"},
        {"become": "root; touch /tmp/x"},
        {"host_key": None},
    ):
        with pytest.raises(HostError):
            SshHost(sshd.target(**bad))


# --- sudo -----------------------------------------------------------------------------


def _need_sudo() -> None:
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (become: needs it on the remote machine)")


def test_become_runs_the_agent_as_that_user(sshd: Sshd) -> None:
    _need_sudo()
    with SshHost(sshd.target(become="postgres")) as host:
        assert host.identity["user"] == "postgres"
        assert host.run(["id", "-un"]).stdout == "postgres\n"
        assert host.run(["id", "-un"], as_user="postgres").stdout == "postgres\n"
        with pytest.raises(HostError) as refused:
            host.run(["id", "-un"], as_user="root")
        assert "not root" in refused.value.message and refused.value.hint


def test_sudo_that_refuses_is_named(sshd: Sshd) -> None:
    _need_sudo()
    error = failure(sshd.target(become="no-such-user"))
    assert error.kind == "sudo"
    assert "unknown user" in error.message


# --- jump host ------------------------------------------------------------------------


def test_through_a_jump_host(sshd: Sshd, bastion: Sshd) -> None:
    before = (sshd.handshakes(), bastion.handshakes())
    with SshHost(sshd.target("db", jump=bastion.target("bastion"))) as host:
        assert host.run(["echo", "through"]).stdout == "through\n"
        assert host.read_text("/etc/hostname") == Path("/etc/hostname").read_text()
    assert (sshd.handshakes(), bastion.handshakes()) == (before[0] + 1, before[1] + 1)


def test_jump_host_failures_name_the_jump_host(sshd: Sshd, bastion: Sshd) -> None:
    jump = bastion.target("bastion")
    wrong_key = failure(sshd.target("db", jump=dataclasses.replace(jump, host_key=sshd.host_key)))
    assert wrong_key.kind == "changed-host-key"
    assert wrong_key.message.startswith("host db: jump host bastion: ")
    auth = failure(sshd.target("db", jump=dataclasses.replace(jump, key_file=str(sshd.client_key))))
    assert auth.kind == "auth" and "jump host bastion" in auth.message
    onward = failure(sshd.target("db", port=1, jump=jump))
    assert onward.kind == "refused" and "jump host" not in onward.message


def test_a_jump_host_that_forbids_forwarding(sshd: Sshd) -> None:
    with running_sshd(options=["AllowTcpForwarding=no"]) as closed:
        error = failure(sshd.target("db", jump=closed.target("closed")))
    assert error.kind == "refused" and "jump host closed" in error.message


def test_become_on_a_machine_without_sudo_is_a_sudo_failure() -> None:
    """sudo missing from the login PATH (here: sshd sets a PATH where nothing is)."""
    with running_sshd(options=["SetEnv=PATH=/nonexistent"]) as bare:
        error = failure(bare.target(become="postgres", python="python3"))
    assert error.kind == "sudo", error
    assert "sudo is not installed" in error.message
    assert "install sudo" in (error.hint or "") and "drop become" in (error.hint or "")


def test_a_private_key_others_can_read_is_named(sshd: Sshd, tmp_path: Path) -> None:
    loose = tmp_path / "loose_key"
    shutil.copy(sshd.client_key, loose)
    loose.chmod(0o644)
    error = failure(sshd.target(key_file=str(loose)))
    assert error.kind == "auth"
    assert "UNPROTECTED PRIVATE KEY FILE" in error.message and "0644" in error.message
    assert error.hint == (
        f"chmod 600 {loose} (ssh ignores a private key that anyone but its owner can read; "
        "keep it owned by the user failback runs as)"
    )


# --- leftovers ------------------------------------------------------------------------


def test_closing_a_host_behind_a_jump_host_leaves_no_directory(
    sshd: Sshd, bastion: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a closed connection is classified by its reader thread, which reads
    the jump host's log: that used to make a new, empty failback-ssh-* directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for _ in range(3):
        host = SshHost(sshd.target("db", jump=bastion.target("bastion")))
        assert host.run(["true"]).ok
        assert len(list(tmp_path.glob("failback-ssh-*"))) == 1
        host.close()
        deadline = time.monotonic() + 2.0  # the reader thread is done well within this
        while time.monotonic() < deadline:
            assert list(tmp_path.glob("failback-ssh-*")) == []
            time.sleep(0.05)


# --- the machine's side of a partition ------------------------------------------------


def test_client_alive_ends_a_partitioned_session_and_its_commands(tmp_path: Path) -> None:
    """With ClientAliveInterval set (what docs/hosts.md asks of a machine's sshd, and the
    netns lab sets), sshd drops a session whose client stopped answering; the agent's
    stdin ends and it kills the command it was running. The partition is played by
    stopping the local ssh (SIGSTOP): its TCP connection stays up, it answers nothing."""
    pidfile = tmp_path / "sleep.pid"
    with running_sshd(options=["ClientAliveInterval=1", "ClientAliveCountMax=2"]) as server:
        host = SshHost(server.target())
        outcome: list[BaseException] = []

        def runner() -> None:
            try:
                host.run(["/bin/sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 300'], timeout=120)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=runner)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not (pidfile.exists() and pidfile.read_text().strip()):
                assert time.monotonic() < deadline, "the command never started"
                time.sleep(0.02)
            command = int(pidfile.read_text())
            ssh_pid = host.ssh_pid
            assert ssh_pid is not None
            os.kill(ssh_pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 15
                while LocalHost().pid_alive(command):
                    assert time.monotonic() < deadline, "the command outlived its session"
                    time.sleep(0.1)
                assert "Timeout, client not responding" in server.log
            finally:
                os.kill(ssh_pid, signal.SIGCONT)
            thread.join(30)
            assert outcome and isinstance(outcome[0], HostUnreachable), outcome
        finally:
            host.close()
            thread.join(5)


# --- failback hosts check -------------------------------------------------------------

CHECKED = """\
hosts:
  db1: {{via: ssh, address: 127.0.0.1, port: {port}, user: root, key: "file:{key}",
        host_key: "{host_key}"}}
  gone: {{via: ssh, address: 127.0.0.1, port: {closed}, user: root, key: "file:{key}",
         host_key: "{host_key}"}}
  nokey: {{via: ssh, address: 127.0.0.1, port: {port}, user: root,
          key: "file:{missing}", host_key: "{host_key}"}}
  loose: {{via: ssh, address: 127.0.0.1, port: {port}, user: root, key: "file:{loose}",
          host_key: "{host_key}"}}
sites:
  dc1: {{runs_on: db1}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        sites:
          dc1: {{port: 5432, pgdata: /srv/pg1}}
          dc2: {{port: 5433, pgdata: /srv/pg2}}
"""


def test_hosts_check_names_each_host_once_with_known_kinds(sshd: Sshd, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    loose = tmp_path / "loose_key"
    shutil.copy(sshd.client_key, loose)
    loose.chmod(0o644)
    topology = tmp_path / "failback.yaml"
    topology.write_text(
        CHECKED.format(
            port=sshd.port,
            closed=closed,
            key=sshd.client_key,
            missing=tmp_path / "no_such_key",
            loose=loose,
            host_key=sshd.host_key,
        )
    )
    text = run_cli("hosts", "check", "-c", str(topology))
    assert text.returncode == 1, text.stderr
    errors = [line for line in text.stderr.splitlines() if line.startswith("error: ")]
    assert sorted(errors) == sorted(
        [
            f"error: host gone: connection to 127.0.0.1 port {closed} refused",
            f"error: host nokey: the ssh key file:{tmp_path / 'no_such_key'} does not exist",
            f"error: host loose: the ssh key file:{loose} can be read by others (mode 0644); "
            "ssh ignores such a key",
        ]
    ), text.stderr
    assert f"hint: chmod 600 {loose}" in text.stderr.splitlines()
    document = json.loads(run_cli("hosts", "check", "-c", str(topology), "--json").stdout)
    kinds = {host["name"]: host["kind"] for host in document["hosts"]}
    assert kinds == {
        "db1": None,
        "local": None,
        "gone": "refused",
        "nokey": "config",
        "loose": "config",
    }
    assert all(kind in KINDS for kind in kinds.values() if kind is not None)
