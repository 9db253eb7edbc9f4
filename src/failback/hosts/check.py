"""Is a machine reachable, as whom, and how fast: what ``failback hosts check`` prints.

Works on any Host: an ``SshHost`` reports its handshake time and the identity its
agent announced; other hosts (``LocalHost``) are asked with ``id`` and ``uname``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from failback.errors import FailbackError
from failback.hosts.base import Host
from failback.hosts.ssh import SshHost
from failback.hosts.ssh_errors import HostUnreachable

__all__ = ["HostCheck", "check"]

_IDENTITY_SCRIPT = "id -un; id -u; uname -n"


@dataclass(frozen=True)
class HostCheck:
    """One machine's answer (or why there was none)."""

    name: str
    reachable: bool
    latency_ms: float | None = None
    """Round trip of ``run(["true"])`` over the open connection."""
    connect_ms: float | None = None
    """How long the connection took to open (0 for the local machine)."""
    identity: dict[str, Any] = field(default_factory=dict)
    """user, uid, hostname the commands run as / on."""
    kind: str | None = None
    """``HostUnreachable.kind`` when not reachable (``auth``, ``refused``...)."""
    message: str = ""
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(host: Host, *, timeout: float = 10.0) -> HostCheck:
    """Connect (if needed), learn the identity, time a trivial command."""
    try:
        if isinstance(host, SshHost):
            host.connect()
            connect_ms = (host.connect_s or 0.0) * 1000
            hello = host.identity
            identity = {k: hello[k] for k in ("user", "uid", "hostname") if k in hello}
        else:
            connect_ms = 0.0
            identity = _ask_identity(host, timeout)
        started = time.perf_counter()
        result = host.run(["true"], timeout=timeout)
        latency_ms = (time.perf_counter() - started) * 1000
    except HostUnreachable as exc:
        return HostCheck(host.name, False, kind=exc.kind, message=exc.message, hint=exc.hint)
    except FailbackError as exc:
        return HostCheck(host.name, False, kind="other", message=exc.message, hint=exc.hint)
    if not result.ok:
        return HostCheck(
            host.name,
            False,
            connect_ms=connect_ms,
            identity=identity,
            kind="other",
            message=f"`true` failed there: {result.tail() or result.returncode}",
        )
    return HostCheck(
        host.name,
        True,
        latency_ms=round(latency_ms, 2),
        connect_ms=round(connect_ms, 1),
        identity=identity,
        message="ok",
    )


def _ask_identity(host: Host, timeout: float) -> dict[str, Any]:
    result = host.run_shell(_IDENTITY_SCRIPT, timeout=timeout)
    lines = result.stdout.split()
    if not result.ok or len(lines) < 3:
        return {}
    return {"user": lines[0], "uid": int(lines[1]), "hostname": lines[2]}
