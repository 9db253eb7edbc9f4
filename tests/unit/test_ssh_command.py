"""How the ssh client and the agent are started: no shell from config values, pinned
keys only, the agent's protocol and LocalHost's exceptions.

The agent tests run the real agent (the bootstrap and the source SshHost sends) in a
local ``python3`` over pipes: the same program as behind sshd, minus the transport.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from failback.hosts import agent, base
from failback.hosts.ssh import SshHost, SshTarget
from failback.hosts.ssh_channel import remote_exception
from failback.hosts.ssh_command import (
    BOOTSTRAP,
    SshFiles,
    agent_payload,
    remote_command,
    ssh_argv,
    ssh_environment,
)
from failback.hosts.ssh_errors import HostError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz9wjD6wLw1Zzd2cBqz0Bm0KwM3o3Yv6hQf1n0Pq2xU"


def target(**overrides: Any) -> SshTarget:
    settings: dict[str, Any] = {
        "name": "db1",
        "address": "10.0.0.5",
        "port": 2222,
        "user": "failback",
        "key_file": "/etc/failback/id_ed25519",
        "host_key": KEY + " root@db1",
    }
    settings.update(overrides)
    return SshTarget(**settings)


def option(argv: list[str], name: str) -> str:
    values = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-o"]
    found = [v.split("=", 1)[1] for v in values if v.split("=", 1)[0] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def test_argv_is_strict_and_shell_free() -> None:
    files = SshFiles()
    try:
        argv = ssh_argv(target(), files)
    finally:
        files.cleanup()
    assert argv[-3:-1] == ["--", "10.0.0.5"]
    for name, value in {
        "BatchMode": "yes",
        "StrictHostKeyChecking": "yes",
        "GlobalKnownHostsFile": "/dev/null",
        "IdentitiesOnly": "yes",
        "IdentityFile": '"/etc/failback/id_ed25519"',
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "PubkeyAuthentication": "yes",
        "UpdateHostKeys": "no",
        "ControlPath": "none",
    }.items():
        assert option(argv, name) == value
    assert argv[argv.index("-F") + 1] == "/dev/null"
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "failback"
    assert shlex.split(argv[-1]) == ["python3", "-I", "-c", BOOTSTRAP]


def test_host_key_becomes_a_private_known_hosts_file() -> None:
    files = SshFiles()
    try:
        path = option(ssh_argv(target(), files), "UserKnownHostsFile").strip('"')
        assert Path(path).read_text() == f"[10.0.0.5]:2222 {KEY}\n", "comment dropped"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        port22 = option(ssh_argv(target(port=22), files), "UserKnownHostsFile").strip('"')
        assert Path(port22).read_text() == f"10.0.0.5 {KEY}\n"
    finally:
        files.cleanup()
    assert not os.path.exists(path)


def test_paths_are_quoted_and_percent_escaped(tmp_path: Path) -> None:
    known = tmp_path / "my known %h"
    argv = ssh_argv(target(host_key=None, known_hosts_file=str(known)), SshFiles())
    assert option(argv, "UserKnownHostsFile") == f'"{tmp_path}/my known %%h"'
    with pytest.raises(HostError):
        ssh_argv(target(key_file='/tmp/a"b'), SshFiles())


def test_become_goes_through_sudo_n() -> None:
    command = shlex.split(remote_command(target(become="postgres")))
    assert command[:5] == ["sudo", "-n", "-u", "postgres", "--"]
    assert command[5:] == ["python3", "-I", "-c", BOOTSTRAP]


def test_jump_host_is_a_second_strict_ssh() -> None:
    jump = target(name="bastion", address="192.0.2.10", port=22, user="jump", key_file="/k %d")
    files = SshFiles()
    try:
        argv = ssh_argv(target(jump=jump), files)
        proxy = option(argv, "ProxyCommand")
        inner = shlex.split(proxy)
        assert inner[0].endswith("ssh")
        assert inner[-4:] == ["-W", "[%h]:%p", "--", "192.0.2.10"]
        assert option(inner, "StrictHostKeyChecking") == "yes"
        assert option(inner, "IdentityFile") == '"/k %%%%d"', "% doubled once per level"
        assert option(inner, "BatchMode") == "yes"
        known = option(inner, "UserKnownHostsFile").strip('"')
        assert Path(known).read_text() == f"192.0.2.10 {KEY}\n"
        assert "-E" in inner, "the jump's messages go to their own log"
    finally:
        files.cleanup()


@pytest.mark.parametrize(
    "bad",
    [
        {"address": "-oProxyCommand=x"},
        {"address": "user@host"},
        {"address": "host name"},
        {"address": "$(reboot)"},
        {"user": "-l"},
        {"user": "a b"},
        {"become": "x;y"},
        {"port": 0},
        {"host_key": None},
        {"host_key": KEY, "known_hosts_file": "/k"},
        {"host_key": "garbage"},
    ],
)
def test_values_ssh_would_misread_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(HostError):
        SshHost(target(**bad))


def test_ssh_gets_the_allow_listed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAILBACK_API_TOKEN", "secret")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    env = ssh_environment()
    assert "FAILBACK_API_TOKEN" not in env and "SSH_AUTH_SOCK" not in env
    assert env["SHELL"] == "/bin/sh", "the ProxyCommand is POSIX sh syntax"


def test_agent_repeats_the_allow_list() -> None:
    assert agent.INHERITED_ENV == base.INHERITED_ENV


def test_remote_errors_become_local_exceptions() -> None:
    missing = remote_exception(
        "db1", {"type": "OSError", "errno": 2, "strerror": "No such file", "filename": "/x"}
    )
    assert isinstance(missing, FileNotFoundError) and missing.filename == "/x"
    denied = remote_exception("db1", {"type": "OSError", "errno": 13, "strerror": "Denied"})
    assert isinstance(denied, PermissionError)
    assert isinstance(remote_exception("db1", {"type": "KeyError", "message": "u"}), KeyError)
    bad = remote_exception(
        "db1", {"type": "UnicodeDecodeError", "encoding": "utf-8", "object": "ff", "reason": "x"}
    )
    assert isinstance(bad, UnicodeDecodeError)
    other = remote_exception("db1", {"type": "Refused", "message": "no", "hint": "do"})
    assert isinstance(other, HostError) and other.message == "host db1: no" and other.hint == "do"


# --- the agent itself, over pipes ------------------------------------------------------


class LocalAgent:
    """The agent started exactly as over ssh (bootstrap + payload), on local pipes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={"PATH": os.environ["PATH"], "SECRET_OF_THE_AGENT": "x"},
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(agent_payload())

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def ask(self, rid: int, op: str, **args: Any) -> dict[str, Any]:
        self.send(json.dumps({"id": rid, "op": op, "args": args}).encode() + b"\n")
        return self.reply()

    def reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return dict(json.loads(self.proc.stdout.readline()))

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(10)


def test_agent_protocol_over_pipes() -> None:
    local = LocalAgent()
    try:
        hello = local.ask(1, "hello")
        assert hello["ok"] and hello["value"]["pid"] == local.proc.pid
        assert hello["value"]["agent_version"] == agent.AGENT_VERSION
        env = local.ask(2, "run", argv=["env"], timeout=10)["value"]
        assert "SECRET_OF_THE_AGENT" not in env["stdout"] and "PATH=" in env["stdout"]
        unknown = local.ask(3, "format_disk")
        assert not unknown["ok"] and unknown["error"]["type"] == "Refused"
        local.send(b"this is not json\n")
        garbled = local.reply()
        assert garbled["id"] is None and garbled["error"]["type"] == "Refused"
        missing = local.ask(4, "read_text", path="/nonexistent/file")
        assert missing["error"]["type"] == "OSError" and missing["error"]["errno"] == 2
        # a cancel that arrives before its command starts still stops it
        local.send(json.dumps({"id": 5, "op": "cancel", "target": 6, "args": {}}).encode() + b"\n")
        assert local.reply() == {"id": 5, "ok": True, "value": None}
        early = local.ask(6, "run", argv=["sleep", "30"], timeout=60)["value"]
        assert early["cancelled"] and early["returncode"] != 0
    finally:
        assert local.close() == 0, "the agent exits when its stdin ends"
