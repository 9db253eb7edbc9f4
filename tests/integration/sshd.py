"""A private OpenSSH server on 127.0.0.1 for the SshHost tests: real sshd, never a mock.

Each server gets a fresh directory (host key, authorized_keys, pid file, log), a free
port, and runs in the foreground (``-D -e``) so that its log - one "Accepted
publickey" line per handshake - can be counted. ``-f /dev/null`` keeps the machine's
/etc/ssh/sshd_config out of it. Needs root (sshd refuses to run otherwise without a
lot of set-up) and the openssh-server package; tests skip with the reason when either
is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from failback.hosts.ssh import SshTarget

SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
"""The remote interpreter for most tests: the system's, not a login shell's shim."""


def skip_unless_sshd() -> None:
    if os.geteuid() != 0:
        pytest.skip("the SSH tests start a private sshd, which needs root")
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (scripts/setup.sh installs it)")
    if shutil.which("ssh") is None:
        pytest.skip("the OpenSSH client (ssh) is not installed")


def keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path``; returns the public key ('ssh-ed25519 AAAA')."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sshd:
    """A running sshd: where it listens, its pinned key, a client key it accepts."""

    directory: Path
    port: int
    host_key: str
    client_key: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")

    def handshakes(self) -> int:
        """Logins so far (each SSH connection that authenticated)."""
        return self.log.count("Accepted publickey")

    def target(self, name: str = "remote", **overrides: Any) -> SshTarget:
        settings: dict[str, Any] = {
            "name": name,
            "address": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "key_file": str(self.client_key),
            "host_key": self.host_key,
            "connect_timeout": 3.0,
            "python": SYSTEM_PYTHON,
        }
        settings.update(overrides)
        return SshTarget(**settings)

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.proc.pid:
                    found.append(int(entry))
        return found

    def stop(self) -> None:
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def session_options(options: list[str] | tuple[str, ...]) -> list[str]:
    """``options`` with one ``SetEnv`` that holds ``SHLVL=1`` and the test's own variables.

    ``SHLVL=1``: root's bash skips ~/.bashrc in the commands sshd runs (as the lab's sshd
    does, failback/lab/sshd.py): this machine's rc files are not the test's, and one of
    them (pyenv's) can leave a lock that makes every later session wait 60 s. sshd keeps
    the first ``SetEnv`` it is given, so a test's variables join this one.
    """
    variables = ["SHLVL=1"]
    others = []
    for option in options:
        if option.startswith("SetEnv="):
            variables += option.removeprefix("SetEnv=").split()
        else:
            others.append(option)
    return ["SetEnv=" + " ".join(variables), *others]


def start_sshd(directory: Path, authorized: list[str], options: list[str]) -> Sshd:
    """sshd on 127.0.0.1:<free port> accepting the keys in ``authorized``; ``options``
    are more ``-o Keyword=value`` settings. Nothing is left running when this raises
    (sshd did not start, or the wait was interrupted: Ctrl-C, a test timeout)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_key = keygen(directory / "host_key")
    client_key = directory / "client_key"
    client_pub = keygen(client_key)
    (directory / "authorized_keys").write_text("\n".join([client_pub, *authorized]) + "\n")
    last_log = ""
    for _attempt in range(5):
        port = free_port()
        argv = [
            SSHD,
            "-D",
            "-e",
            "-f",
            "/dev/null",
            *("-o", "ListenAddress=127.0.0.1"),
            *("-o", f"Port={port}"),
            *("-o", f"HostKey={directory / 'host_key'}"),
            *("-o", f"AuthorizedKeysFile={directory / 'authorized_keys'}"),
            *("-o", f"PidFile={directory / 'sshd.pid'}"),
            *("-o", "UsePAM=no"),
            *("-o", "PermitRootLogin=prohibit-password"),
            *("-o", "StrictModes=no"),
            *("-o", "MaxStartups=100"),
            *("-o", "MaxSessions=100"),
            *[arg for option in session_options(options) for arg in ("-o", option)],
        ]
        proc: subprocess.Popen[bytes] | None = None
        try:
            with open(directory / "sshd.log", "wb") as log:  # sshd keeps writing it
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            server = Sshd(directory, port, host_key, client_key, proc)
            if _listening(server):
                return server
        except BaseException:  # interrupted (Ctrl-C, a test timeout): leave no sshd behind
            if proc is not None:
                Sshd(directory, port, host_key, client_key, proc).stop()
            raise
        last_log = server.log
        server.stop()
    raise RuntimeError(f"sshd did not start: {last_log[-500:]}")


def _listening(server: Sshd, timeout: float = 10.0) -> bool:
    """Wait until ``server`` says it listens (False: it exited or stayed silent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        if "Server listening" in server.log:
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def running_sshd(
    authorized: list[str] | None = None,
    options: list[str] | None = None,
    *,
    parent: Path | None = None,
) -> Iterator[Sshd]:
    """A private sshd for the duration of the block; its directory (made in ``parent``,
    else the temp directory) is removed after, also when sshd fails to start."""
    skip_unless_sshd()
    directory = Path(tempfile.mkdtemp(prefix="failback-sshd-", dir=parent))
    server: Sshd | None = None
    try:
        server = start_sshd(directory, authorized or [], options or [])
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
