"""How the agent is started: the ``ssh`` argument list, its environment, the pinned keys.

The OpenSSH client does the SSH (operators know its semantics: known_hosts,
ProxyJump, algorithms; it is maintained by the OpenSSH project; failback carries no
SSH implementation). It is started with an argument list, never a shell string made
from configuration: nothing in a topology (an address, a user, a path) can become
shell syntax on this machine. ``-F /dev/null`` keeps the operator's ~/.ssh/config
out of it, so a connection behaves the same whoever runs failback; every setting
that matters is on the command line:

* only key authentication, only the key given (``IdentitiesOnly``, no ssh-agent),
  never a prompt (``BatchMode``);
* only the pinned host key (``StrictHostKeyChecking=yes`` against a known_hosts file
  failback was given or wrote from ``host_key:``; the global file is ignored and
  ``UpdateHostKeys=no`` leaves the operator's file untouched);
* keep-alives so that a dead path is noticed in seconds
  (``ServerAliveInterval`` x ``ServerAliveCountMax``), not after TCP gives up.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shlex
import shutil
import tempfile
import threading
import weakref
from importlib import resources
from typing import TYPE_CHECKING

from failback.hosts.base import inherited_environment
from failback.hosts.ssh_errors import HostError, host_pattern

if TYPE_CHECKING:
    from failback.hosts.ssh import SshTarget

__all__ = [
    "BOOTSTRAP",
    "KEEPALIVE_COUNT",
    "KEEPALIVE_INTERVAL_S",
    "SshFiles",
    "agent_payload",
    "check_target",
    "hops",
    "host_pattern",
    "ssh_argv",
    "ssh_environment",
]

KEEPALIVE_INTERVAL_S = 2
KEEPALIVE_COUNT = 3
"""ssh gives up after this many unanswered keep-alives, 2 s apart: a partition ends a
connection (and fails its requests with ``HostUnreachable``) within about 6 s."""

BOOTSTRAP = (
    "import sys;"
    "sys.version_info<(3,9)and sys.exit('failback-agent: python3 is %s, 3.9 or later is "
    "needed'%sys.version.split()[0]);"
    "b=sys.stdin.buffer;n=int(b.readline());"
    "exec(compile(b.read(n),'failback-agent','exec'))"
)
"""The remote ``python3 -I -c`` program: read the agent's length, then its source, from
stdin, and run it. One line, so that any login shell passes it intact (quoted)."""

_ADDRESS = re.compile(r"^[A-Za-z0-9_.:%-]+$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@$-]*$")


def check_target(target: SshTarget) -> None:
    """Refuse values ssh would read as something else (an option, user@host...)."""
    for hop in hops(target):
        where = f"host {hop.name}"
        if not _ADDRESS.match(hop.address) or hop.address.startswith("-"):
            raise HostError(
                f"{where}: address {hop.address!r} is not a host name or IP address",
                "write a DNS name or an IP address, without user@ or :port",
            )
        for what, value in (("user", hop.user), ("become", hop.become)):
            if value is not None and not _USER.match(value):
                raise HostError(f"{where}: {what} {value!r} is not a user name", None)
        if (hop.known_hosts_file is None) == (hop.host_key is None):
            raise HostError(
                f"{where}: give exactly one of known_hosts_file and host_key",
                "failback never accepts a host key it was not told to expect",
            )
        if hop.host_key is not None and len(hop.host_key.split()) < 2:
            raise HostError(
                f"{where}: host_key must look like 'ssh-ed25519 AAAA...'",
                "copy /etc/ssh/ssh_host_ed25519_key.pub from that machine",
            )
        if not 0 < hop.port < 65536:
            raise HostError(f"{where}: port {hop.port} is out of range", None)


def hops(target: SshTarget) -> list[SshTarget]:
    """``target``, its jump host, that one's jump host..."""
    chain = [target]
    while chain[-1].jump is not None:
        chain.append(chain[-1].jump)  # type: ignore[arg-type]
        if len(chain) > 8:
            raise HostError(f"host {target.name}: too many jump hosts (a loop?)", None)
    return chain


class SshFiles:
    """The private files ssh needs: known_hosts written from ``host_key:`` values, and
    one log per jump host.

    They live in a directory of this process (0700, from ``mkdtemp``; files 0600),
    made when ssh first needs it and removed by ``cleanup()`` or at exit. A target
    given ``known_hosts_file`` uses that file as it is. A jump host's ssh writes its
    messages to its own log (``-E``) rather than to the shared stderr, so that a
    failure is told apart from the target's: "jump host bastion: Permission denied" vs
    the target's own refusal.

    Reading a jump log never makes the directory: the end of a connection is
    classified (its jump logs read) by the channel's reader thread, possibly after
    ``cleanup()``; that used to bring back an empty directory nothing removed before
    the process exited.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._files: dict[tuple[str, int, str], str] = {}
        self._finalizer: weakref.finalize | None = None

    def _directory(self) -> str:
        if self._dir is None or not os.path.isdir(self._dir):
            if self._finalizer is not None:
                self._finalizer()  # the old one vanished: drop its finalizer too
            self._dir = tempfile.mkdtemp(prefix="failback-ssh-")
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        return self._dir

    def known_hosts(self, target: SshTarget) -> str:
        if target.known_hosts_file is not None:
            return os.path.abspath(target.known_hosts_file)
        assert target.host_key is not None
        key = " ".join(target.host_key.split()[:2])
        with self._lock:
            wanted = (target.address, target.port, key)
            path = self._files.get(wanted)
            if path is not None and os.path.exists(path):
                return path
            path = os.path.join(self._directory(), f"known_hosts.{len(self._files)}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(f"{host_pattern(target.address, target.port)} {key}\n")
            self._files[wanted] = path
            return path

    def jump_log(self, jump: SshTarget) -> str:
        """Where the ssh to ``jump`` writes its messages (emptied by ``clear_logs``)."""
        with self._lock:
            return os.path.join(self._directory(), _log_name(jump))

    def clear_logs(self) -> None:
        """Empty the jump logs before a connection attempt (ssh -E appends)."""
        with self._lock:
            directory = self._dir
        if directory is None or not os.path.isdir(directory):
            return
        for name in os.listdir(directory):
            if name.startswith("jump-"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))

    def read_log(self, jump: SshTarget, limit: int = 20_000) -> str:
        """What the ssh to ``jump`` logged ("" when nothing; never makes the directory)."""
        with self._lock:
            directory = self._dir
        if directory is None:
            return ""
        try:
            path = os.path.join(directory, _log_name(jump))
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-limit:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._dir, self._files, self._finalizer = None, {}, None


def _log_name(jump: SshTarget) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", jump.name)
    return f"jump-{safe}-{jump.port}.log"


def _config_path(path: str, what: str, name: str) -> str:
    """A path as an ``-o Keyword=value`` value: quoted (spaces), ``%`` doubled (ssh
    expands %-tokens in these paths)."""
    path = os.path.abspath(path)
    if any(c in path for c in '"\\\n\r'):
        raise HostError(
            f"host {name}: the {what} path {path!r} has a quote, backslash or newline",
            "move the file to a plain path",
        )
    return '"' + path.replace("%", "%%") + '"'


def ssh_options(target: SshTarget, files: SshFiles, ssh: str) -> list[str]:
    """Every option for reaching ``target`` (its jump host included), no destination."""
    known_hosts = _config_path(files.known_hosts(target), "known_hosts", target.name)
    options = [
        "-F",
        "/dev/null",
        "-T",
        *("-o", "BatchMode=yes"),
        *("-o", "StrictHostKeyChecking=yes"),
        *("-o", f"UserKnownHostsFile={known_hosts}"),
        *("-o", "GlobalKnownHostsFile=/dev/null"),
        *("-o", "UpdateHostKeys=no"),
        *("-o", "CheckHostIP=no"),
        *("-o", "IdentitiesOnly=yes"),
        *("-o", "IdentityAgent=none"),
        *("-o", f"IdentityFile={_config_path(target.key_file, 'key', target.name)}"),
        *("-o", "PasswordAuthentication=no"),
        *("-o", "KbdInteractiveAuthentication=no"),
        *("-o", "PubkeyAuthentication=yes"),
        *("-o", "HostbasedAuthentication=no"),
        *("-o", f"ConnectTimeout={max(1, math.ceil(target.connect_timeout))}"),
        *("-o", f"ServerAliveInterval={KEEPALIVE_INTERVAL_S}"),
        *("-o", f"ServerAliveCountMax={KEEPALIVE_COUNT}"),
        *("-o", "ControlMaster=no"),
        *("-o", "ControlPath=none"),
        *("-o", "ForwardAgent=no"),
        *("-o", "ForwardX11=no"),
        *("-o", "ClearAllForwardings=yes"),
        *("-o", "PermitLocalCommand=no"),
        *("-p", str(target.port)),
        *("-l", target.user),
    ]
    if target.jump is not None:
        options += ["-o", f"ProxyCommand={_proxy_command(target.jump, files, ssh)}"]
    return options


def _proxy_command(jump: SshTarget, files: SshFiles, ssh: str) -> str:
    """A second ssh, as strict as the first, that carries the connection (``-W``).

    Not ``ProxyJump``: the ssh that ProxyJump starts does not get our ``-o`` options
    (pinned known_hosts, key), so it would trust ~/.ssh/known_hosts. ssh runs this
    string with ``/bin/sh -c`` (we set SHELL) after expanding %-tokens, hence
    ``shlex.join`` and every ``%`` doubled except those of ``-W [%h]:%p``.
    """
    argv = [ssh, *ssh_options(jump, files, ssh), "-E", files.jump_log(jump)]
    escaped = [arg.replace("%", "%%") for arg in argv]
    return shlex.join([*escaped, "-W", "[%h]:%p", "--", jump.address.replace("%", "%%")])


def remote_command(target: SshTarget) -> str:
    """What sshd runs: the bootstrap, through ``sudo -n`` when ``become`` is set.

    One string (ssh joins its arguments with spaces for the remote shell anyway), built
    with ``shlex.join`` from validated values and constants."""
    argv = [target.python, "-I", "-c", BOOTSTRAP]
    if target.become is not None:
        argv = ["sudo", "-n", "-u", target.become, "--", *argv]
    return shlex.join(argv)


def ssh_binary() -> str:
    found = shutil.which("ssh") or ("/usr/bin/ssh" if os.path.exists("/usr/bin/ssh") else None)
    if found is None:
        raise HostError(
            "the OpenSSH client (ssh) is not installed on this machine",
            "install it (apt-get install openssh-client)",
        )
    return found


def ssh_argv(target: SshTarget, files: SshFiles) -> list[str]:
    """The whole ``ssh`` command that starts the agent on ``target``."""
    check_target(target)
    ssh = ssh_binary()
    return [ssh, *ssh_options(target, files, ssh), "--", target.address, remote_command(target)]


def ssh_environment() -> dict[str, str]:
    """ssh's environment: the allow-list, and SHELL=/bin/sh for the ProxyCommand.

    failback's own environment (API token, secrets) stays here; with ``-F /dev/null``
    no ``SendEnv`` sends any of it anyway.
    """
    env = inherited_environment(os.environ)
    env["SHELL"] = "/bin/sh"
    return env


def agent_payload() -> bytes:
    """What the bootstrap reads: the agent's length on a line, then its source."""
    source = resources.files("failback.hosts").joinpath("agent.py").read_bytes()
    return str(len(source)).encode() + b"\n" + source
