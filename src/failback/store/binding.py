"""Which backend a state directory's journal lives in: ``open_journal(state_dir)``.

A state directory is bound to a control plane by ``STATE_DIR/control-plane.json``
(endpoints, prefix, TLS and credentials *by reference*, never a secret's value),
written whenever a command opens the journal with a topology that has a
``control_plane:`` section, and removed when the topology has none. Everything that
knows only the state directory (a run's abort watcher, the monitor's run threads, a
person's ``failback runs --state-dir D``) then opens the same journal as the process
that bound it: the etcd store when bound, the SQLite file otherwise.

Why a file rather than passing the topology everywhere: the state directory already is
what every caller holds, and a machine's state directory belongs to one control plane;
the file makes that visible (and private: 0600, like the journal).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from failback.errors import StateError
from failback.model.secrets import SecretRef
from failback.store.base import Store
from failback.store.sqlite import SqliteStore

if TYPE_CHECKING:  # the etcd client and store are imported by the one path that uses them
    from failback.coord.etcd import EtcdClient

BINDING_FILE = "control-plane.json"


@dataclass(frozen=True)
class EtcdBinding:
    """How to reach the control plane's etcd and where under it the journal lives."""

    endpoints: tuple[str, ...]
    prefix: str
    request_timeout: float = 1.0
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    """A secret reference (``file:/path``), never a key."""
    username: str | None = None
    password: str | None = None
    """A secret reference (``env:NAME`` or ``file:/path``), never a password."""

    def open_client(self) -> EtcdClient:
        from failback.coord.etcd import EtcdClient

        return EtcdClient(
            self.endpoints,
            request_timeout=self.request_timeout,
            ca_file=Path(self.ca_file) if self.ca_file else None,
            cert_file=Path(self.cert_file) if self.cert_file else None,
            key=SecretRef.parse(self.key_file) if self.key_file else None,
            username=self.username,
            password=SecretRef.parse(self.password) if self.password else None,
        )

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["endpoints"] = list(self.endpoints)
        return document


def bind(state_dir: Path, binding: EtcdBinding | None) -> None:
    """Bind ``state_dir`` to ``binding`` (None: back to the SQLite file), atomically and
    only when it changes (0600: it names where the journal and its credentials live)."""
    path = Path(state_dir) / BINDING_FILE
    if binding is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    text = json.dumps(binding.to_json(), indent=2, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{BINDING_FILE}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def read_binding(state_dir: Path) -> EtcdBinding | None:
    """The control plane ``state_dir`` is bound to, or None (its SQLite file)."""
    path = Path(state_dir) / BINDING_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(
            f"{path} cannot be read: {exc}",
            hint="it is rewritten by any command given the topology (-c FILE); "
            "or remove it to use this state directory's SQLite journal",
        ) from None
    try:
        return EtcdBinding(
            endpoints=tuple(data["endpoints"]),
            prefix=str(data["prefix"]),
            request_timeout=float(data.get("request_timeout") or 1.0),
            ca_file=data.get("ca_file"),
            cert_file=data.get("cert_file"),
            key_file=data.get("key_file"),
            username=data.get("username"),
            password=data.get("password"),
        )
    except (KeyError, TypeError, ValueError):
        raise StateError(
            f"{path} does not describe a control plane",
            hint="run any command with the topology (-c FILE) to rewrite it",
        ) from None


def open_journal(state_dir: Path) -> Store:
    """The journal of ``state_dir``: the control plane's etcd store when the directory is
    bound to one, else its SQLite file. One object per thread (both backends keep an
    SQLite connection, which belongs to the thread that opened it)."""
    binding = read_binding(state_dir)
    if binding is None:
        return SqliteStore(state_dir)
    from failback.store.etcd import EtcdStore  # without a control plane, never imported

    return EtcdStore(Path(state_dir), binding.open_client(), binding.prefix)
