"""observe(): which next hop the prefix uses, and whether one site's path answers.

Read-only: it opens netlink and an ICMP socket in the routing namespace, reads the
prefix's route, checks that the site's probe address is routed through the site's own
next hop (else its echo would prove another path), and sends one echo. It never raises:
a missing namespace, a remote host or a silent path is an unhealthy observation.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from failback.drivers.base import observe_time_left
from failback.drivers.route import table
from failback.drivers.route.echo import echo
from failback.drivers.route.errors import RouteError
from failback.drivers.route.namespace import open_icmp, open_netlink, require_local
from failback.drivers.route.settings import RouteComponent, RouteSite
from failback.hosts import Host
from failback.model.observed import ComponentObservation

PROBE_ECHOES = 2
"""Echoes per path probe: one lost datagram on a healthy path is not a failure (the
monitor's threshold counts failed probes, not lost packets)."""


def path_of(settings: RouteComponent, site: str) -> RouteSite:
    return settings.sites[site]


def same_hop(hop: table.NextHop, path: RouteSite) -> bool:
    """``hop`` is this path's next hop (and its interface, when the path names one)."""
    return hop.gateway == path.gateway and (path.dev is None or hop.dev == path.dev)


def probe_path(ipr: Any, icmp: Any, path: RouteSite, site: str, timeout: float) -> tuple[bool, str]:
    """Echo the path's probe address, after proving the echo goes through this path."""
    hop = table.lookup(ipr, path.probe)
    if not same_hop(hop, path):
        return False, (
            f"probe {path.probe} is routed {hop.describe()}, not through {site}'s next hop "
            f"{path.gateway}: its echo would not prove this path"
        )
    result = echo(icmp, path.probe, count=PROBE_ECHOES, timeout=timeout)
    return result.replies > 0, f"probe {result.describe(path.probe)}"


def observe_route(
    host: Host, name: str, settings: RouteComponent, site: str
) -> ComponentObservation:
    """The path of ``site``: in use for the prefix or not, and healthy or not."""
    path = path_of(settings, site)
    options = settings.options
    data: dict[str, Any] = {
        "prefix": options.prefix,
        "gateway": path.gateway,
        "dev": path.dev,
        "probe": path.probe,
        "netns": options.netns,
    }

    def seen(healthy: bool, role: str, detail: str) -> ComponentObservation:
        return ComponentObservation(
            component=name, site=site, driver="route", healthy=healthy, role=role,
            detail=detail, data=data, observed_at=time.time(),
        )  # fmt: skip

    try:
        require_local(host, name, site)
        with contextlib.closing(open_netlink(options.netns)) as ipr:
            hops = table.prefix_routes(ipr, options.prefix, options.table)
            in_use = any(same_hop(hop, path) for hop in hops)
            data["in_use"] = in_use
            data["route"] = [hop.describe() for hop in hops]
            with contextlib.closing(open_icmp(options.netns)) as icmp:
                timeout = observe_time_left(float(options.probe_timeout))
                healthy, probe = probe_path(ipr, icmp, path, site, timeout)
    except RouteError as exc:
        return seen(False, "unknown", exc.message)
    role = "active" if in_use else "standby"
    using = (
        f"{options.prefix} goes {path.gateway}"
        if in_use
        else f"{options.prefix} goes {', '.join(data['route']) or 'nowhere (no route)'}"
    )
    state = "healthy" if healthy else "DOWN"
    return seen(healthy, role, f"path via {path.gateway} {state}: {probe}; {using}")
