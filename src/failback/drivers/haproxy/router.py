"""Router-level operations named for what they mean to a failover or failback.

A write backend must never send clients to two servers at once (promise 1: never
two writable primaries reachable by clients). So ``route_to`` fences every other
server *before* it readies the target, and ``write_target`` refuses to answer
when more than one server takes traffic. Every operation is idempotent: HAProxy
accepts setting a state a server already has, and closing no sessions is a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping

from failback.drivers.haproxy.errors import MultipleWriteTargets, UnknownServer
from failback.drivers.haproxy.runtime import HaproxyRuntime
from failback.drivers.haproxy.server_state import ServerState


class HaproxyRouter(HaproxyRuntime):
    """An HAProxy backend used as the switch that decides which site takes writes."""

    def fence(self, backend: str, server: str) -> None:
        """No client reaches this server any more: maint, then close its sessions.

        Order matters: maint first so that no new session lands between the two
        commands; then existing sessions are cut (measured < 1 ms for both).
        """
        self.set_state(backend, server, "maint")
        self.shutdown_sessions(backend, server)

    def route_to(self, backend: str, server: str) -> None:
        """Send all new traffic to ``server`` and none to the others of the backend.

        Every other server is fenced first, then the target is readied, so at no
        instant are two servers ready. Unknown server -> ``UnknownServer``, before
        anything changes.
        """
        names = self.server_state_names(backend)
        if server not in names:
            raise UnknownServer(
                f"backend {backend!r} has no server {server!r} (servers: {', '.join(names)})",
                hint="fix the router's per-site 'server' names in the topology or haproxy.cfg",
            )
        for other in names:
            if other != server:
                self.fence(backend, other)
        self.set_state(backend, server, "ready")

    def drain(self, backend: str, server: str) -> None:
        """Take no new sessions on this server; let the existing ones finish."""
        self.set_state(backend, server, "drain")

    def active_servers(self, backend: str) -> list[str]:
        """Servers that would receive a new client connection now, in config order."""
        return [name for name, st in self.server_states(backend).items() if st.takes_new_sessions]

    def write_target(self, backend: str) -> str | None:
        """The single server taking traffic, or None when none does.

        More than one is a two-primary risk: it is raised, never resolved here,
        because which one is right is for the planner to decide with the
        databases' own view of their roles.
        """
        return write_target_of(backend, self.server_states(backend))

    def server_state_names(self, backend: str) -> list[str]:
        """Names of the backend's servers in configuration order."""
        return [row.get("srv_name", "") for row in self._state_rows(backend)]


def write_target_of(backend: str, states: Mapping[str, ServerState]) -> str | None:
    """``HaproxyRouter.write_target`` from states already read: one ``server_states``
    answer serves an observation's own server and its write target (the same instant,
    and half the runtime-API connections of asking twice)."""
    active = [name for name, st in states.items() if st.takes_new_sessions]
    if len(active) > 1:
        raise MultipleWriteTargets(
            f"backend {backend!r} sends traffic to {len(active)} servers "
            f"({', '.join(active)}): two writable endpoints are reachable",
            hint=f"fence all but one, e.g. set server {backend}/<other> state maint",
        )
    return active[0] if active else None
