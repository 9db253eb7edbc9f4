"""The ssh failure classifier, on OpenSSH 9.2's real messages.

Every text below was captured on this machine by provoking the failure against a
real sshd (OpenSSH_9.2p1 Debian-2+deb12u10, sudo 1.9.13p3), except the two marked
"source": those were copied from OpenSSH's source (ssh.c / clientloop.c), because a
route-less network or a half-dead server cannot be produced here reliably.
"""

from __future__ import annotations

from typing import Any

import pytest

from failback.hosts.ssh_errors import KINDS, ConnectFailure, classify

UNKNOWN_KEY = """\
No ED25519 host key is known for [127.0.0.1]:22022 and you have requested strict checking.
Host key verification failed.
"""

CHANGED_KEY = """\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:9wxX3SELvYtX6BrVaI3ShlCnxZDUhn34bnKvhys2Tf4.
Please contact your system administrator.
Add correct host key in /tmp/sshexp.meM3/kh_changed to get rid of this message.
Offending ED25519 key in /tmp/sshexp.meM3/kh_changed:1
  remove with:
  ssh-keygen -f "/tmp/sshexp.meM3/kh_changed" -R "[127.0.0.1]:22022"
Host key for [127.0.0.1]:22022 has changed and you have requested strict checking.
Host key verification failed.
"""

AUTH = "root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).\n"
AUTH_MISSING_KEY = (
    "Warning: Identity file /nonexistent not accessible: No such file or directory.\n"
    "root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).\n"
)
REFUSED = "ssh: connect to host 127.0.0.1 port 1: Connection refused\n"
BANNER_TIMEOUT = "Connection timed out during banner exchange\n"
CONNECT_TIMEOUT = "Connection to 10.255.255.1 port 22022 timed out\n"
CONNECT_TIMEOUT_CLASSIC = "ssh: connect to host 10.0.0.1 port 22: Connection timed out\n"  # source
NO_ROUTE = "ssh: connect to host 192.0.2.1 port 22: No route to host\n"  # source
DNS = "ssh: Could not resolve hostname no-such-host.invalid: Name or service not known\n"
NO_PYTHON = "bash: line 1: python3-nope: command not found\n"
NO_PYTHON_PATH = "bash: line 1: /nonexistent/python3: No such file or directory\n"
OLD_PYTHON = "failback-agent: python3 is 3.8.18, 3.9 or later is needed\n"
SUDO_PASSWORD = "sudo: a password is required\n"
SUDO_UNKNOWN_USER = (
    "sudo: unknown user nosuch\nsudo: error initializing audit plugin sudoers_audit\n"
)
NO_SUDO_BASH = (  # become: on a machine whose login PATH has no sudo (the noise: root's .bashrc)
    "/usr/bin/env: 'bash': No such file or directory\n"
    "/usr/bin/env: 'bash': No such file or directory\n"
    "bash: line 1: sudo: command not found\n"
)
NO_SUDO_DASH = "sh: 1: sudo: not found\n"  # dash's own words, captured with sh -c (not over ssh)
SUDO_NO_PYTHON = "sudo: python3-nope: command not found\n"
SUDO_NOT_ALLOWED = (  # sudo(8)'s words (source): its own command line quotes our bootstrap
    "Sorry, user failback is not allowed to execute '/usr/bin/python3 -I -c import sys;"
    "sys.version_info<(3,9)and sys.exit('failback-agent: python3 is %s, 3.9 or later is "
    "needed'%sys.version.split()[0]);...' as postgres on db1.\n"
)
UNPROTECTED_KEY = (
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    "@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\r\n"
    "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n"
    "Permissions 0644 for '/tmp/tmpa_hn531i/key' are too open.\r\n"
    "It is required that your private key files are NOT accessible by others.\r\n"
    "This private key will be ignored.\r\n"
    'Load key "/tmp/tmpa_hn531i/key": bad permissions\r\n'
    "root@127.0.0.1: Permission denied (publickey,password,keyboard-interactive).\r\n"
)
LOST = "Connection to 127.0.0.1 closed by remote host.\n"
FORWARDING_FORBIDDEN = (
    "channel 0: open failed: administratively prohibited: open failed\nstdio forwarding failed\n"
)

WHERE = {"address": "127.0.0.1", "port": 22022, "user": "root"}


def failure(returncode: int, stderr: str, **settings: Any) -> ConnectFailure:
    """``classify`` at WHERE, with ``settings`` (python=, become=, port=...) on top."""
    return classify(returncode, stderr, **{**WHERE, **settings})


@pytest.mark.parametrize(
    ("returncode", "stderr", "kind"),
    [
        (255, UNKNOWN_KEY, "unknown-host-key"),
        (255, CHANGED_KEY, "changed-host-key"),
        (255, AUTH, "auth"),
        (255, AUTH_MISSING_KEY, "auth"),
        (255, REFUSED, "refused"),
        (255, FORWARDING_FORBIDDEN, "refused"),
        (255, BANNER_TIMEOUT, "timeout"),
        (255, CONNECT_TIMEOUT, "timeout"),
        (255, CONNECT_TIMEOUT_CLASSIC, "timeout"),
        (255, NO_ROUTE, "unreachable"),
        (255, DNS, "unreachable"),
        (127, NO_PYTHON, "no-python"),
        (127, NO_PYTHON_PATH, "no-python"),
        (1, OLD_PYTHON, "no-python"),
        (255, LOST, "lost"),
        (255, "something nobody foresaw\n", "other"),
        (3, "", "other"),
    ],
)
def test_each_real_message_gets_its_kind(returncode: int, stderr: str, kind: str) -> None:
    found = classify(returncode, stderr, **WHERE)  # type: ignore[arg-type]
    assert found.kind == kind
    assert found.kind in KINDS
    assert found.message and "\n" not in found.message
    assert found.hint


def test_sudo_failures_need_become() -> None:
    """sudo's words only mean "sudo" when failback asked for sudo (become:)."""
    prompt = classify(1, SUDO_PASSWORD, become="postgres", **WHERE)  # type: ignore[arg-type]
    assert prompt.kind == "sudo" and "password" in prompt.message and "NOPASSWD" in prompt.hint
    # sudoers wants a full path: "NOPASSWD: python3" is a syntax error there
    assert "NOPASSWD: /usr/bin/python3" in prompt.hint
    assert "NOPASSWD: python3" not in prompt.hint
    pinned = failure(1, SUDO_PASSWORD, become="postgres", python="/opt/py/bin/python3")
    assert "NOPASSWD: /opt/py/bin/python3" in pinned.hint
    unknown = classify(1, SUDO_UNKNOWN_USER, become="nosuch", **WHERE)  # type: ignore[arg-type]
    assert unknown.kind == "sudo"
    assert unknown.message.endswith("sudo: unknown user nosuch"), "the cause, not the noise"
    assert classify(1, SUDO_PASSWORD, **WHERE).kind == "other"  # type: ignore[arg-type]


def test_messages_name_the_place() -> None:
    assert "127.0.0.1 port 22022" in classify(255, REFUSED, **WHERE).message  # type: ignore[arg-type]
    assert "[127.0.0.1]:22022" in classify(255, UNKNOWN_KEY, **WHERE).hint  # type: ignore[arg-type]
    assert "3.8.18" in classify(1, OLD_PYTHON, **WHERE).message  # type: ignore[arg-type]
    changed = classify(255, CHANGED_KEY, **WHERE)  # type: ignore[arg-type]
    assert "ssh-keyscan -p 22022 127.0.0.1" in changed.hint


@pytest.mark.parametrize("stderr", [NO_SUDO_BASH, NO_SUDO_DASH])
def test_become_without_sudo_is_a_sudo_failure(stderr: str) -> None:
    found = failure(127, stderr, become="postgres")
    assert found.kind == "sudo"
    assert "sudo is not installed" in found.message and "become: postgres" in found.message
    assert "install sudo" in found.hint and "drop become" in found.hint
    assert "NOPASSWD: /usr/bin/python3" in found.hint


def test_sudo_that_cannot_find_python_is_no_python() -> None:
    found = failure(1, SUDO_NO_PYTHON, become="postgres", python="python3-nope")
    assert found.kind == "no-python" and "python3-nope" in found.message
    assert "secure_path" in found.message


def test_sudo_refusal_quoting_the_bootstrap_is_not_taken_for_an_old_python() -> None:
    found = failure(1, SUDO_NOT_ALLOWED, become="postgres")
    assert found.kind == "sudo" and "not allowed to execute" in found.message


def test_a_private_key_others_can_read_is_named_with_chmod() -> None:
    found = failure(255, UNPROTECTED_KEY)
    assert found.kind == "auth" and found.kind in KINDS
    assert "/tmp/tmpa_hn531i/key" in found.message and "0644" in found.message
    assert "\n" not in found.message and "\r" not in found.message
    assert found.hint.startswith("chmod 600 /tmp/tmpa_hn531i/key")
    assert "authorized_keys" not in found.hint


def test_the_known_hosts_entry_named_in_the_hint_follows_the_port() -> None:
    on_22 = failure(255, UNKNOWN_KEY, port=22)
    assert "entry for 127.0.0.1" in on_22.hint and "[127.0.0.1]" not in on_22.hint
    other = failure(255, UNKNOWN_KEY)
    assert "entry for [127.0.0.1]:22022" in other.hint


def test_config_is_a_kind() -> None:
    """``failback hosts check`` reports an unusable host entry as kind ``config``."""
    assert "config" in KINDS and len(set(KINDS)) == len(KINDS)
