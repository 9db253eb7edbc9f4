"""One OpenSSH server per machine of the netns lab, with the lab's own keys.

Failback reaches a real site over SSH, so the lab's machines are reached the same way:
each namespace runs its own ``sshd``, listening only on that machine's address, with
its own ed25519 host key. The lab has one client key (root logs in with it, keys
only) and a ``known_hosts`` that pins every machine's host key to its address, so a
client never has to accept a key on first sight. Everything lives in ``DIR/ssh/``
(private keys 0600, the directory 0700).

The daemon is started with ``ip netns exec NS /usr/sbin/sshd -f /dev/null -o ...``:
no system configuration is read, and since ``ip netns exec`` execs sshd in place,
the daemon and every session it forks live in that namespace; whatever a session
starts (PostgreSQL, a web app) runs on that machine.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from failback.lab.errors import LabError
from failback.lab.netns_plan import NetPlan
from failback.lab.nsproc import identify
from failback.lab.syscmd import run

SSHD = "/usr/sbin/sshd"
PORT = 22
PRIVSEP_DIR = Path("/run/sshd")
"""sshd's privilege-separation directory: must exist, root-owned, not group-writable."""
LOG_LEVEL = "INFO"
CLIENT_ALIVE_INTERVAL_S = 5
CLIENT_ALIVE_COUNT = 3
"""sshd drops a session whose client stopped answering (a partition) after about
5 s x 3; the agent's stdin then ends, and it kills its commands and exits, as when
failback closes the connection. What docs/hosts.md recommends for real machines."""
_SSH_HINT = "apt-get install openssh-server (scripts/setup.sh installs it)"


def missing_programs() -> list[str]:
    """The OpenSSH programs the netns lab needs that this machine lacks."""
    missing = [] if os.access(SSHD, os.X_OK) else [SSHD]
    missing += [prog for prog in ("ssh", "ssh-keygen") if shutil.which(prog) is None]
    return missing


@dataclass(frozen=True)
class SshFiles:
    """Where the lab's keys, known_hosts, pid files and sshd logs are (``DIR/ssh``)."""

    dir: Path

    @property
    def client_key(self) -> Path:
        """The lab's private key: root logs in to every machine with it."""
        return self.dir / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.dir / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        """Every machine's address with its host key (port 22, so no ``[addr]:port``)."""
        return self.dir / "known_hosts"

    def host_key(self, name: str) -> Path:
        return self.dir / f"host_{name}_ed25519"

    def pid_file(self, name: str) -> Path:
        return self.dir / f"sshd_{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.dir / f"sshd_{name}.log"

    def to_dict(self) -> dict[str, str]:
        """What lab.json keeps as ``network.ssh`` (the topology's hosts use these)."""
        return {
            "dir": str(self.dir),
            "key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
        }


def files_for(directory: str | os.PathLike[str]) -> SshFiles:
    return SshFiles(Path(os.path.abspath(directory)) / "ssh")


# ----------------------------------------------------------------------------- keys


def prepare(directory: str | os.PathLike[str], plan: NetPlan) -> SshFiles:
    """Keys, authorized_keys and known_hosts of the lab (kept when they already exist).

    Regenerating a key only when it is missing keeps known_hosts files that people or
    other tools copied valid across ``lab up`` runs; known_hosts is rewritten from the
    public keys every time, so it always matches the plan's addresses.
    """
    files = files_for(directory)
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    _keypair(files.client_key, "failback-lab-client")
    _write_if_changed(files.authorized_keys, _public(files.client_key))
    lines = []
    for name, host in plan.hosts.items():
        _keypair(files.host_key(name), f"failback-lab-{name}")
        key_type, blob = _public(files.host_key(name)).split()[:2]
        lines.append(f"{host.address} {key_type} {blob}\n")
    _write_if_changed(files.known_hosts, "".join(lines))
    return files


def _keypair(path: Path, comment: str) -> None:
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return
    path.unlink(missing_ok=True)
    pub.unlink(missing_ok=True)
    run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        hint=_SSH_HINT,
    )
    os.chmod(path, 0o600)


def _public(private: Path) -> str:
    return private.with_name(private.name + ".pub").read_text().strip() + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# ------------------------------------------------------------------------ the daemon


def sshd_argv(files: SshFiles, plan: NetPlan, name: str) -> list[str]:
    """The daemon of machine ``name``: only command-line settings, only its address.

        ``-f /dev/null``: nothing of /etc/ssh applies. Keys only, root by key only.
        ``StrictModes=no`` because labs live under /tmp, which anyone may write to (sshd
    would refuse an authorized_keys below it).
        ``MaxSessions``/``MaxStartups`` are raised because failback multiplexes many
        sessions over one connection and tests connect in parallel.
        ``ClientAliveInterval``/``ClientAliveCountMax``: a partitioned session (and the
        agent and commands it carries) ends on the machine's side too, not only on
        failback's (``ServerAliveInterval``); without them sshd would wait for TCP.
        ``SetEnv=SHLVL=1``: bash skips ~/.bashrc in the commands sshd runs. Debian's bash
    reads it when sshd starts it at shell level 1, and the lab's machines share this
    machine's /root, whose rc files belong to this machine, not to them. One such file
    (pyenv's ``init``) rehashes under a lock file: a session killed mid-rehash (``lab
    break SITE host`` kills every process of the machine) left the lock behind, and every
    later session then waited 60 s for it, so the lab's machines stopped answering.
    """
    host = plan.host(name)
    options = {
        "ListenAddress": host.address,
        "Port": str(PORT),
        "HostKey": str(files.host_key(name)),
        "AuthorizedKeysFile": str(files.authorized_keys),
        "PidFile": str(files.pid_file(name)),
        "UsePAM": "no",
        "PermitRootLogin": "prohibit-password",
        "PubkeyAuthentication": "yes",
        "PasswordAuthentication": "no",
        "KbdInteractiveAuthentication": "no",
        "StrictModes": "no",
        "PrintMotd": "no",
        "PrintLastLog": "no",
        "UseDNS": "no",
        "ClientAliveInterval": str(CLIENT_ALIVE_INTERVAL_S),
        "ClientAliveCountMax": str(CLIENT_ALIVE_COUNT),
        "MaxSessions": "64",
        "MaxStartups": "64:30:128",
        "Subsystem": "sftp internal-sftp",
        "LogLevel": LOG_LEVEL,
        "SetEnv": "SHLVL=1",
    }
    argv = [SSHD, "-f", "/dev/null", "-E", str(files.log_file(name))]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    return argv


def running_pid(directory: str | os.PathLike[str], plan: NetPlan, name: str) -> int | None:
    """The pid of machine ``name``'s sshd when it runs (in its namespace), else None.

    The pid file outlives a SIGKILLed daemon, and its pid may since belong to another
    process: it counts only if that process is an sshd in the machine's namespace.
    """
    files = files_for(directory)
    try:
        pid = int(files.pid_file(name).read_text().split()[0])
        exe = os.readlink(f"/proc/{pid}/exe")
    except (OSError, ValueError, IndexError):
        return None
    if not exe.startswith(SSHD) or identify(pid) != plan.host(name).netns:
        return None
    return pid


def start(
    directory: str | os.PathLike[str], plan: NetPlan, name: str, *, timeout: float = 10.0
) -> int:
    """Start machine ``name``'s sshd unless it runs; wait until it answers; return its pid.

    ``prepare`` must have made the keys. A running daemon is left alone.
    """
    pid = running_pid(directory, plan, name)
    if pid is None:
        pid = _launch(directory, plan, name, timeout=timeout)
    wait_ready(plan.host(name).address, timeout=timeout)
    return pid


def start_all(
    directory: str | os.PathLike[str], plan: NetPlan, *, timeout: float = 10.0
) -> dict[str, int]:
    """Every machine's sshd (launched first, then waited for, so the waits overlap)."""
    started = {
        name: running_pid(directory, plan, name) or _launch(directory, plan, name, timeout=timeout)
        for name in plan.hosts
    }
    for host in plan.hosts.values():
        wait_ready(host.address, timeout=timeout)
    return started


def _launch(directory: str | os.PathLike[str], plan: NetPlan, name: str, *, timeout: float) -> int:
    files = files_for(directory)
    host = plan.host(name)
    if not files.host_key(name).exists():
        raise LabError(f"{name} has no host key in {files.dir}", hint="sshd.prepare() makes it")
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    files.pid_file(name).unlink(missing_ok=True)
    run(
        ["ip", "netns", "exec", host.netns, *sshd_argv(files, plan, name)],
        hint=f"see {files.log_file(name)}",
    )
    deadline = time.monotonic() + timeout
    while (pid := running_pid(directory, plan, name)) is None:
        if time.monotonic() > deadline:
            raise LabError(
                f"sshd of {name} ({host.netns}) did not start: {_last_log_line(files, name)}",
                hint=f"see {files.log_file(name)}",
            )
        time.sleep(0.02)
    return pid  # running_pid checked it is an sshd in the machine's namespace


def _last_log_line(files: SshFiles, name: str) -> str:
    try:
        lines = files.log_file(name).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def stop(
    directory: str | os.PathLike[str], plan: NetPlan, name: str, *, timeout: float = 5.0
) -> None:
    """Stop machine ``name``'s sshd (the listener only: open sessions end on their own)."""
    pid = running_pid(directory, plan, name)
    if pid is None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while running_pid(directory, plan, name) is not None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return
    raise LabError(f"sshd of {name} (pid {pid}) does not stop", hint="see ps -o pid,stat,cmd")


def is_running(directory: str | os.PathLike[str], plan: NetPlan, name: str) -> bool:
    return running_pid(directory, plan, name) is not None


def wait_ready(address: str, *, port: int = PORT, timeout: float = 10.0) -> str:
    """Wait until an SSH server answers on ``address``; return its banner line.

    A TCP connect alone could be accepted by the kernel's backlog of a daemon that is
    still starting; the banner proves sshd itself speaks.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            return banner(address, port=port, timeout=min(1.0, deadline - time.monotonic()))
        except OSError as exc:
            last = str(exc) or type(exc).__name__
        time.sleep(0.05)
    raise LabError(
        f"no SSH server answers on {address}:{port} within {timeout:g} s ({last})",
        hint="is the netns lab up and its link not down? (failback lab status)",
    )


def banner(address: str, *, port: int = PORT, timeout: float = 1.0) -> str:
    """Connect and read the server's identification line (``SSH-2.0-...``)."""
    with socket.create_connection((address, port), timeout=max(timeout, 0.05)) as sock:
        data = b""
        while b"\n" not in data and len(data) < 256:
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith("SSH-"):
        raise ConnectionError(f"not an SSH server: {line[:60]!r}")
    return line


def ssh_argv(
    directory: str | os.PathLike[str],
    address: str,
    command: Sequence[str],
    *,
    connect_timeout: int = 5,
) -> list[str]:
    """The system ssh client, logging in as root to ``address`` the strict way.

    No user or system configuration, no agent, no prompt; the host key must be the
    one pinned in the lab's known_hosts. ``command`` is an argument list, quoted for
    the remote shell.
    """
    files = files_for(directory)
    return [
        "ssh",
        "-F", "/dev/null",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={files.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes",
        "-o", f"ConnectTimeout={connect_timeout}",
        "-i", str(files.client_key),
        "-l", "root",
        "-p", str(PORT),
        address,
        shlex.join(command),
    ]  # fmt: skip
