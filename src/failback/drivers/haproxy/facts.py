"""Observation of a router component (driver ``haproxy``) at one site.

The router has one server per site in one backend. A site's router role is
``active`` when its server is the backend's single write target, ``standby``
when it takes no new sessions (maint or drain), ``down`` when HAProxy cannot be
asked. Observation never raises: an unreachable router is an unhealthy one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from failback.drivers.haproxy.errors import HaproxyError, MultipleWriteTargets
from failback.drivers.haproxy.router import HaproxyRouter, write_target_of
from failback.drivers.haproxy.runtime import server_of
from failback.drivers.haproxy.server_state import ServerState
from failback.drivers.kept import answer_at_hand, kept
from failback.hosts import Host
from failback.model.observed import ComponentObservation


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Options may be a config model or a plain mapping (tests, lab)."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


@dataclass(frozen=True)
class RouterTarget:
    """Where a router component's site lives in HAProxy: socket, backend, server."""

    socket: str
    backend: str
    server: str
    timeout: float = 5.0

    def router(self) -> HaproxyRouter:
        return HaproxyRouter(self.socket, self.timeout)


def router_target(component: Any, site: str) -> RouterTarget:
    """Read ``options.socket``/``options.backend`` and ``sites[site].server`` (duck-typed)."""
    opts = _get(component, "options")
    where = _get(_get(component, "sites", {}), site)
    timeout = _get(opts, "timeout", None)
    return RouterTarget(
        socket=str(_get(opts, "socket")),
        backend=str(_get(opts, "backend")),
        server=str(_get(where, "server", site)),
        timeout=float(timeout) if timeout else 5.0,
    )


StatesOf = Callable[[RouterTarget], dict[str, ServerState]]
"""How an observation gets the server states of its target's backend."""


class _NotAtHand(Exception):
    """No answer another probe received recently enough (``observe_haproxy_at_hand``)."""


def _states_key(target: RouterTarget) -> tuple[str, str, str]:
    return ("haproxy", target.socket, target.backend)


def _states_at_hand(target: RouterTarget) -> dict[str, ServerState]:
    states = answer_at_hand(_states_key(target))
    if states is None:
        raise _NotAtHand
    return states  # type: ignore[no-any-return]


def _server_states(target: RouterTarget) -> dict[str, ServerState]:
    """Every server of the target's backend, as HAProxy answers now; under the monitor's
    ``keeping`` an answer another probe of the same backend got a moment ago (a small
    part of the probe interval, ``failback.drivers.kept``): hundreds of services behind
    one HAProxy would otherwise each open its runtime socket twice per interval, and a
    burst fills the socket's backlog (EAGAIN: healthy routers recorded as failed)."""
    pool = kept()
    if pool is None:
        return target.router().server_states(target.backend)
    return pool.recent(_states_key(target), lambda: target.router().server_states(target.backend))


def observe_haproxy_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """One site's server in the write backend, and the backend's write target.

    ``host`` is unused: the runtime API is reached over the network (a TCP stats socket,
    for an HAProxy on another machine) or through a unix socket on this machine, never
    through an SSH command (a switch must not wait for a remote shell).
    """
    del host, service
    return _observe(name, component, site, _server_states)


def observe_haproxy_at_hand(name: str, component: Any, site: str) -> ComponentObservation | None:
    """The observation from the backend's server states another probe received within
    the scope's ``share_within`` (``failback.drivers.kept``), or None. No I/O: the
    monitor's event loop calls it."""
    try:
        return _observe(name, component, site, _states_at_hand)
    except _NotAtHand:
        return None


def _observe(name: str, component: Any, site: str, states_of: StatesOf) -> ComponentObservation:
    if _get(_get(component, "options"), "tier", "database") == "stateless":
        return observe_traffic_share(name, component, site, states_of)
    target = router_target(component, site)
    data: dict[str, Any] = {"backend": target.backend, "server": target.server}
    try:
        # one answer for the server and the write target: both as of the same instant
        states = states_of(target)
        state = server_of(target.backend, target.server, states)
        data.update(state.to_dict())
        try:
            data["write_target"] = write_target_of(target.backend, states)
        except MultipleWriteTargets as exc:
            data["write_target"] = None
            return ComponentObservation(
                component=name, site=site, driver="haproxy", healthy=False,
                role="active" if state.takes_new_sessions else "standby",
                detail=exc.message, data=data, observed_at=time.time(),
            )  # fmt: skip
    except HaproxyError as exc:
        return ComponentObservation(
            component=name, site=site, driver="haproxy", healthy=False, role="down",
            detail=exc.message, data=data, observed_at=time.time(),
        )  # fmt: skip
    role = "active" if state.takes_new_sessions else "standby"
    detail = f"{target.backend}/{target.server} {state.admin_state}, {state.op_state}"
    return ComponentObservation(
        component=name, site=site, driver="haproxy", healthy=True, role=role,
        detail=detail, data=data, observed_at=time.time(),
    )  # fmt: skip


def observe_traffic_share(
    name: str, component: Any, site: str, states_of: StatesOf = _server_states
) -> ComponentObservation:
    """A stateless tier: this site's share of the traffic (by weight) and its health check.

    Both sites may take traffic at once here (that is the point of the traffic steps),
    so there is no single write target to check.
    """
    target = router_target(component, site)
    data: dict[str, Any] = {"backend": target.backend, "server": target.server, "tier": "stateless"}
    try:
        states = states_of(target)
    except HaproxyError as exc:
        return ComponentObservation(
            component=name, site=site, driver="haproxy", healthy=False, role="down",
            detail=exc.message, data=data, observed_at=time.time(),
        )  # fmt: skip
    mine = states.get(target.server)
    if mine is None:
        return ComponentObservation(
            component=name, site=site, driver="haproxy", healthy=False, role="down",
            detail=f"no server {target.server} in {target.backend}", data=data,
            observed_at=time.time(),
        )  # fmt: skip
    taking = {n: s.weight for n, s in states.items() if s.admin_state == "ready"}
    total = sum(taking.values())
    share = round(100.0 * taking.get(target.server, 0) / total, 1) if total else 0.0
    data.update(mine.to_dict())
    data["traffic_percent"] = share
    healthy = mine.op_state in ("running", "starting")
    role = "active" if mine.takes_new_sessions else "standby"
    detail = (
        f"{target.backend}/{target.server}: {share:g}% of traffic (weight {mine.weight}),"
        f" check {mine.check_status or 'none'}, {mine.op_state}"
    )
    return ComponentObservation(
        component=name, site=site, driver="haproxy", healthy=healthy, role=role,
        detail=detail, data=data, observed_at=time.time(),
    )  # fmt: skip
