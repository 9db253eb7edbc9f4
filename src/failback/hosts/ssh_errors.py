"""What can go wrong reaching a machine over SSH, said in one line with a hint.

OpenSSH reports every connection failure the same way (exit status 255) and explains
it only in English on stderr. ``classify`` turns that text, the status and what the
remote side printed (a missing python3, a sudo that would prompt) into a *kind* that
code can branch on and a person can act on. The patterns are OpenSSH 9.2's real
messages, captured by provoking each failure against a real sshd
(tests/unit/test_ssh_classify.py keeps the captures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from failback.errors import FailbackError

__all__ = [
    "CommandCancelled",
    "ConnectFailure",
    "HostError",
    "HostUnreachable",
    "classify",
    "host_pattern",
]

KINDS = (
    "unknown-host-key",
    "changed-host-key",
    "refused",
    "auth",
    "timeout",
    "unreachable",
    "no-python",
    "sudo",
    "lost",
    "no-answer",
    "config",
    "other",
)
"""Every failure kind: ``HostUnreachable.kind``, and ``config`` for a host entry that
cannot be used at all (a missing or unprotected key file: ``failback hosts check``)."""


class HostUnreachable(FailbackError):
    """failback could not reach a machine, or lost it while a request was in flight.

    Never an ``OSError``: code that treats a missing file as "not there" (``except
    OSError``) must not mistake a lost connection for a missing file. A request in
    flight when the connection went is not retried here (it may or may not have taken
    effect remotely): the step fails, and its ``check`` makes a retry safe.
    """

    def __init__(self, host: str, kind: str, message: str, hint: str | None) -> None:
        super().__init__(f"host {host}: {message}", hint)
        self.host = host
        self.kind = kind
        self.detail = message

    def again(self) -> HostUnreachable:
        """A fresh copy, to raise in another thread that waited on the same attempt."""
        return HostUnreachable(self.host, self.kind, self.detail, self.hint)


class HostError(FailbackError):
    """The remote agent refused a request, or failed in a way that has no local twin."""


class CommandCancelled(FailbackError):
    """A remote command was stopped before it finished (``cancel_running``, ``close``).

    Raised only once the agent has reported the command's whole process group gone."""


@dataclass(frozen=True)
class ConnectFailure:
    """A classified failure: what ``HostUnreachable`` is made of."""

    kind: str
    message: str
    hint: str


_PATTERNS: tuple[tuple[str, str, str, str], ...] = (
    # (kind, regex on stderr, message, hint) - first match wins; {address} {port}
    # {user} {detail} are filled in.
    (
        "changed-host-key",
        r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed",
        "its host key is not the pinned one (REMOTE HOST IDENTIFICATION HAS CHANGED)",
        "if the machine was reinstalled, pin its new key (host_key: or known_hosts:) after "
        "checking it out of band (ssh-keyscan -p {port} {address}, compared with "
        "/etc/ssh/ssh_host_ed25519_key.pub on the console); otherwise suspect a "
        "man-in-the-middle",
    ),
    (
        "unknown-host-key",
        r"No \S+ host key is known|Host key verification failed",
        "its host key is not pinned (no matching entry in the known_hosts failback uses)",
        "pin it with host_key: 'ssh-ed25519 AAAA...' (from "
        "/etc/ssh/ssh_host_ed25519_key.pub on that machine) or a known_hosts: file "
        "holding an entry for {entry}",
    ),
    (
        "auth",
        r"Permission denied \(|Too many authentication failures",
        "{user}@{address} refused our key (Permission denied)",
        "check that the key's .pub is in ~{user}/.ssh/authorized_keys on that machine, "
        "that the user exists and is not locked, and that sshd permits it (root: "
        "PermitRootLogin prohibit-password)",
    ),
    (
        "refused",
        r"administratively prohibited",
        "refuses to forward the connection onward (administratively prohibited)",
        "allow TCP forwarding for {user} on that machine (sshd: AllowTcpForwarding, "
        "PermitOpen), or connect without this jump host",
    ),
    (
        "refused",
        r"Connection refused",
        "connection to {address} port {port} refused",
        "is sshd running and listening on {address}:{port}? (a firewall that rejects "
        "gives the same answer)",
    ),
    (
        "timeout",
        r"[Cc]onnection timed out|Operation timed out|timed out during banner exchange"
        r"|port \d+ timed out",
        "no answer from {address} port {port} within the connect timeout",
        "is the machine up and the path to it open (routing, firewall, a partition)? "
        "raise connect_timeout for a slow link",
    ),
    (
        "unreachable",
        r"No route to host|Network is unreachable|Could not resolve hostname"
        r"|Name or service not known|Temporary failure in name resolution",
        "{address} cannot be reached: {detail}",
        "check the address and this machine's routes and DNS",
    ),
    (
        "lost",
        r"closed by remote host|Connection reset|Broken pipe|Timeout, server .* not responding"
        r"|client_loop: send disconnect",
        "the connection was lost: {detail}",
        "failback reconnects on the next request; a request that was in flight may or may "
        "not have taken effect there (the step's check decides)",
    ),
)

_UNPROTECTED_KEY = re.compile(r"UNPROTECTED PRIVATE KEY FILE|Load key \"[^\"]*\": bad permissions")
_KEY_PATH = re.compile(r"Load key \"([^\"]+)\": bad permissions|for '([^']+)' are too open")
_KEY_MODE = re.compile(r"Permissions (0?[0-7]{3,4}) for ")
_NO_SUDO = re.compile(  # bash, dash ("sh: 1: sudo: not found"), zsh
    r"\bsudo: (command )?not found|\bsudo: No such file or directory|command not found: sudo\b"
)
_SUDO_PASSWORD = re.compile(r"sudo: (a password is required|a terminal is required)")
_SUDO_NO_PYTHON = re.compile(r"^sudo: \S*python\S*: command not found", re.MULTILINE)
_SUDO = re.compile(r"^sudo: |is not in the sudoers file|not allowed to execute", re.MULTILINE)
_NO_PYTHON = re.compile(
    r"(python\S*): (command )?not found|(python\S*): No such file or directory"
    r"|failback-agent: python3? is (\S+)"
)


def classify(
    returncode: int | None,
    stderr: str,
    *,
    address: str,
    port: int,
    user: str,
    python: str = "python3",
    become: str | None = None,
) -> ConnectFailure:
    """The kind, message and hint for an ssh that ended (or never answered)."""
    fill = {
        "address": address,
        "port": port,
        "user": user,
        "detail": _last_line(stderr),
        "entry": host_pattern(address, port),
    }
    if returncode == 255 or returncode is None:
        if _UNPROTECTED_KEY.search(stderr):
            return _unprotected_key(stderr)
        for kind, pattern, message, hint in _PATTERNS:
            if re.search(pattern, stderr):
                return ConnectFailure(kind, message.format(**fill), hint.format(**fill))
    if become is not None and _NO_SUDO.search(stderr):
        return ConnectFailure(
            "sudo",
            f"sudo is not installed on {address} (or not on the login PATH of {user}); "
            f"become: {become} needs it",
            f"install sudo there (apt-get install sudo) with a sudoers rule {user} "
            f"ALL=({become}) NOPASSWD: {_full_path(python)}, or drop become: and log in "
            f"as {become} directly",
        )
    if become is not None and _SUDO_PASSWORD.search(stderr):
        return ConnectFailure(
            "sudo",
            f"sudo would ask {user} for a password to become {become}",
            f"allow it without a password in sudoers on that machine ({user} ALL=({become}) "
            f"NOPASSWD: {_full_path(python)}; sudoers wants the interpreter's full path, "
            f"as `command -v {python}` prints it there), or log in as {become} directly",
        )
    if become is not None and _SUDO_NO_PYTHON.search(stderr):
        return ConnectFailure(
            "no-python",
            f"{python} is not installed on {address} (or not on sudo's secure_path)",
            "install python3 there (only the standard library is used; nothing of failback "
            "is installed)",
        )
    if become is not None and _SUDO.search(stderr):
        return ConnectFailure(
            "sudo",
            f"sudo refused to run the agent as {become}: {_first_line(stderr, 'sudo:')}",
            f"check that {become} exists there and that sudoers lets {user} run the "
            f"interpreter as {become} without a password ({user} ALL=({become}) NOPASSWD: "
            f"{_full_path(python)}, the full path)",
        )
    found = _NO_PYTHON.search(stderr)
    if found is not None and returncode in (1, 126, 127):
        if found.group(4):
            return ConnectFailure(
                "no-python",
                f"{python} on {address} is {found.group(4)}; failback's agent needs 3.9 or later",
                "install a newer python3 on that machine (only the standard library is used)",
            )
        return ConnectFailure(
            "no-python",
            f"{python} is not installed on {address} (or not on the login PATH of {user})",
            "install python3 there (only the standard library is used; nothing of failback "
            "is installed)",
        )
    if returncode == 255:
        return ConnectFailure(
            "other", f"ssh failed: {fill['detail']}", "run ssh -v by hand to see more"
        )
    status = "was killed" if returncode is not None and returncode < 0 else f"exited {returncode}"
    return ConnectFailure(
        "other",
        f"the remote agent {status}: {fill['detail'] or 'no message'}",
        "run the same ssh by hand to see more; a login shell that prints on stdout or "
        "an sshd ForceCommand can get in the way",
    )


def host_pattern(address: str, port: int) -> str:
    """How known_hosts names a machine: ``address`` on port 22, else ``[address]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def _unprotected_key(stderr: str) -> ConnectFailure:
    """ssh skipped a private key that others can read, then sshd refused the login."""
    found = _KEY_PATH.search(stderr)
    path = (found.group(1) or found.group(2)) if found is not None else "the key file"
    mode = _KEY_MODE.search(stderr)
    loose = f" (mode {mode.group(1)})" if mode is not None else ""
    return ConnectFailure(
        "auth",
        f"ssh refused to use the private key {path}: others can read it{loose} "
        "(UNPROTECTED PRIVATE KEY FILE)",
        f"chmod 600 {path} (ssh ignores a private key that anyone but its owner can read; "
        "keep it owned by the user failback runs as)",
    )


def _full_path(python: str) -> str:
    """sudoers names commands by full path: ``/usr/bin/python3`` for ``python3``."""
    return python if python.startswith("/") else f"/usr/bin/{python}"


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _first_line(stderr: str, prefix: str) -> str:
    """The first line starting with ``prefix`` (sudo's cause comes before its noise)."""
    for line in stderr.splitlines():
        if line.strip().startswith(prefix):
            return line.strip()[:300]
    return _last_line(stderr)
