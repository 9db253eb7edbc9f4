"""The machines components run on (``hosts:``) and how failback reaches each.

A component at a site lives on one machine: its ``runs_on`` names it, else its
site's ``runs_on``, else ``local`` (the machine failback runs on, as before this
section existed). Every process and file action of a driver goes through that
machine's ``Host``; network-first observation (libpq, HTTP, admin sockets over TCP)
does not need it.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from failback.errors import FailbackError
from failback.hosts import Host, HostSet, LocalHost
from failback.hosts.hostset import LOCAL, Placement
from failback.hosts.ssh import SshHost, SshTarget
from failback.model.durations import PositiveDuration
from failback.model.fields import ConfigModel, NonEmptyStr, Port
from failback.model.secrets import SecretRef

__all__ = ["LOCAL", "HostSpec", "LocalMachine", "SshMachine", "open_hosts"]


class LocalMachine(ConfigModel):
    """The machine failback itself runs on."""

    via: Literal["local"] = Field(description="local: this machine, no connection.")
    description: str = Field("", description="Free text for people reading the topology.")


class SshMachine(ConfigModel):
    """A machine reached with OpenSSH's client: key authentication, pinned host key."""

    via: Literal["ssh"] = Field(description="ssh: reached with the OpenSSH client.")
    description: str = Field("", description="Free text for people reading the topology.")
    address: NonEmptyStr = Field(description="Address or DNS name sshd listens on.")
    port: Port = Field(22, description="sshd's port.")
    user: NonEmptyStr = Field(description="The user failback logs in as.")
    key: SecretRef = Field(
        description="The private key (file:/path, or env:NAME holding the key text). "
        "Key authentication only: passwords are never tried."
    )
    known_hosts: str | None = Field(
        None,
        description="A known_hosts file that pins this machine's host key (relative to "
        "the topology's directory). Exactly one of known_hosts and host_key.",
    )
    host_key: str | None = Field(
        None,
        description="The machine's public host key, e.g. 'ssh-ed25519 AAAA...' "
        "(as in /etc/ssh/ssh_host_ed25519_key.pub). A key not pinned is never accepted.",
    )
    jump: str | None = Field(
        None, description="Another ssh host of this section to connect through (a bastion)."
    )
    become: str | None = Field(
        None,
        description="Run as this user through `sudo -n -u USER` (e.g. postgres, or root "
        "when the login user may sudo without a password).",
    )
    connect_timeout: PositiveDuration = Field(  # type: ignore[assignment]
        5.0, description="Give up connecting after this long."
    )

    @field_validator("known_hosts")
    @classmethod
    def _relative_to_topology(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        context = info.context if isinstance(info.context, dict) else {}
        base = Path(context.get("config_dir") or Path.cwd())
        return str(Path(base, Path(value).expanduser()).absolute())

    @field_validator("host_key")
    @classmethod
    def _looks_like_a_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split()
        if len(parts) < 2 or not (
            parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-") or "@" in parts[0]
        ):
            raise ValueError(
                "must be a public host key like 'ssh-ed25519 AAAAC3Nza...' "
                "(the content of /etc/ssh/ssh_host_ed25519_key.pub on that machine)"
            )
        return " ".join(parts[:2])

    @model_validator(mode="after")
    def _one_pin(self) -> SshMachine:
        if (self.known_hosts is None) == (self.host_key is None):
            raise ValueError(
                "give exactly one of known_hosts (a file) and host_key (the key itself): "
                "failback never accepts a host key it was not told to expect"
            )
        return self


HostSpec = Annotated[LocalMachine | SshMachine, Field(discriminator="via")]
"""One entry of ``hosts:``; pydantic picks the model from ``via:``."""


def open_hosts(hosts: dict[str, LocalMachine | SshMachine], place: Placement) -> HostSet:
    """A ``HostSet`` for a topology's machines: each connects on first use and stays
    connected until the set is closed (so a run's steps do not pay a handshake each)."""
    openers: dict[str, Callable[[], Host]] = {LOCAL: LocalHost}
    for name, spec in hosts.items():
        if isinstance(spec, LocalMachine):
            openers[name] = LocalHost
        else:
            openers[name] = _ssh_opener(name, spec, hosts)
    return HostSet(openers, place)


def _ssh_opener(
    name: str, spec: SshMachine, hosts: dict[str, LocalMachine | SshMachine]
) -> Callable[[], Host]:
    def open_host() -> Host:
        return SshHost(ssh_target(name, spec, hosts))

    return open_host


def ssh_target(
    name: str,
    spec: SshMachine,
    hosts: dict[str, LocalMachine | SshMachine],
    _seen: tuple[str, ...] = (),
) -> SshTarget:
    """What the SSH client needs for ``name``; the key is a file ssh can read."""
    jump = None
    if spec.jump is not None:
        via = hosts.get(spec.jump)
        if not isinstance(via, SshMachine) or spec.jump in _seen:
            raise FailbackError(
                f"host {name}: jump host {spec.jump!r} is not an ssh host of this topology",
                "run `failback validate` to see the hosts section's problems",
            )
        jump = ssh_target(spec.jump, via, hosts, (*_seen, name))
    return SshTarget(
        name=name,
        address=spec.address,
        port=spec.port,
        user=spec.user,
        key_file=_key_file(name, spec.key),
        known_hosts_file=spec.known_hosts,
        host_key=spec.host_key,
        jump=jump,
        become=spec.become,
        connect_timeout=float(spec.connect_timeout),
    )


def _key_file(name: str, key: SecretRef) -> str:
    """ssh reads keys from files: a ``file:`` key is used where it is (it must exist and
    be private, as ssh wants it); a key held in the environment is written to a private
    file (0600, in a 0700 directory), once per distinct key for the whole process."""
    if key.kind == "file" and key.reference is not None:
        path = key.reference
        try:
            info = os.stat(path)
        except OSError:
            raise FailbackError(
                f"host {name}: the ssh key {key.describe()} does not exist",
                "create it with ssh-keygen -t ed25519 and install its .pub in the "
                "machine's authorized_keys",
            ) from None
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid == os.getuid() and mode & 0o077:
            # ssh's own rule (sshkey_perm_ok): it would ignore the key and log in without it
            raise FailbackError(
                f"host {name}: the ssh key {key.describe()} can be read by others "
                f"(mode {mode:04o}); ssh ignores such a key",
                f"chmod 600 {path}",
            )
        return path
    return _KEY_COPIES.path_for(key.resolve())


class _KeyCopies:
    """Private copies of keys that ssh cannot read from where they are (``env:``,
    ``inline:``): one file per distinct key text, however many times a topology's hosts
    are opened (each run, each observation of a monitor or the API server), in one 0700
    directory of this process that is removed when the process exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._paths: dict[str, str] = {}
        """sha256 of a key's text -> its file (the text itself is not kept)."""
        self._numbers = itertools.count()

    def path_for(self, text: str) -> str:
        text = text.rstrip("\n") + "\n"
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            path = self._paths.get(digest)
            if path is not None and os.path.isfile(path):
                return path
            path = os.path.join(self._directory(), f"id-{next(self._numbers)}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            self._paths[digest] = path
            return path

    def _directory(self) -> str:
        if self._dir is None or not os.path.isdir(self._dir):
            self._dir = tempfile.mkdtemp(prefix="failback-key-")
            atexit.register(_remove_at_exit, self._dir, os.getpid())
        return self._dir


def _remove_at_exit(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked child that exits: the keys are its parent's
        shutil.rmtree(directory, ignore_errors=True)


_KEY_COPIES = _KeyCopies()
