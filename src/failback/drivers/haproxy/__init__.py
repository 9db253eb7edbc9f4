"""The ``haproxy`` driver: drive an HAProxy write backend through its runtime API."""

from failback.drivers.haproxy.errors import (
    HaproxyError,
    HaproxyUnreachable,
    MultipleWriteTargets,
    UnknownBackend,
    UnknownServer,
)
from failback.drivers.haproxy.router import HaproxyRouter
from failback.drivers.haproxy.runtime import HaproxyRuntime
from failback.drivers.haproxy.server_state import AdminState, OpState, ServerState, ServerStats

__all__ = [
    "AdminState",
    "HaproxyError",
    "HaproxyRouter",
    "HaproxyRuntime",
    "HaproxyUnreachable",
    "MultipleWriteTargets",
    "OpState",
    "ServerState",
    "ServerStats",
    "UnknownBackend",
    "UnknownServer",
]
