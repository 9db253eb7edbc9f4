"""Where the routing machine is: this machine's own namespace, or a named one (ip netns).

The route driver talks netlink (pyroute2), not ``ip``: a netlink socket is bound to the
network namespace it was created in, so acting "on the client machine" of the lab is
opening the socket there (pyroute2 does it in a short-lived child that enters the
namespace and hands the socket back). That only works on the machine failback runs on:
a namespace is a kernel object of this machine. A component whose host is another
machine (ssh) is refused with that reason instead of acting on the wrong routing table.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from failback.drivers.route.errors import RouteError
from failback.hosts import Host, LocalHost

NETNS_DIR = "/run/netns"
"""Where ``ip netns add`` pins named namespaces (pyroute2 looks there too)."""


def require_local(host: Host, component: str, site: str) -> None:
    """Refuse a host that is not this machine: its routes are not ours to reach."""
    if not isinstance(host, LocalHost):
        raise RouteError(
            f"{component} at {site} runs on host {host.name!r}: the route driver changes "
            "routes through netlink on the machine failback runs on only",
            hint="run failback (or its monitor) on the routing machine itself, and leave "
            "runs_on unset for route components",
        )


def require_namespace(netns: str | None) -> None:
    """A named namespace must exist (pyroute2 would otherwise *create* an empty one)."""
    if netns is None:
        return
    if "/" in netns or netns in (".", ".."):
        raise RouteError(f"{netns!r} is not a network namespace name", hint="see ip netns list")
    if not os.path.exists(os.path.join(NETNS_DIR, netns)):
        raise RouteError(
            f"network namespace {netns!r} does not exist",
            hint="see `ip netns list`; options.netns names the routing machine's namespace",
        )


def _pyroute2() -> Any:
    """pyroute2, set up so that the child it forks to enter a namespace cannot stop us.

    The child inherits the monitor's asyncio signal wake-up descriptor: when pyroute2
    ends the child with SIGTERM, the child's inherited handler wrote "SIGTERM" into that
    descriptor and the monitor, reading it, stopped (found by a test). With
    ``disable_mp_signal`` the child takes SIGTERM and SIGINT with their defaults first.
    """
    import pyroute2
    from pyroute2 import config

    config.disable_mp_signal = True
    return pyroute2


def open_netlink(netns: str | None) -> Any:
    """An rtnetlink socket (pyroute2 ``IPRoute``) in ``netns`` (None: ours)."""
    IPRoute = _pyroute2().IPRoute

    require_namespace(netns)
    try:
        if netns is None:
            return IPRoute()
        return IPRoute(netns=netns, flags=0)  # flags=0: never create a missing namespace
    except OSError as exc:
        raise RouteError(
            f"cannot open netlink{_in(netns)}: {exc.strerror or exc}",
            hint="changing routes needs root (CAP_NET_ADMIN)",
        ) from None


def open_icmp(netns: str | None) -> socket.socket:
    """A raw ICMP socket in ``netns`` (None: ours), for echo probes (needs CAP_NET_RAW)."""
    pyroute2_netns = _pyroute2().netns

    require_namespace(netns)
    try:
        if netns is None:
            return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        return pyroute2_netns.create_socket(
            netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, flags=0
        )
    except (OSError, TimeoutError) as exc:
        raise RouteError(
            f"cannot open an ICMP socket{_in(netns)}: {exc}",
            hint="path probes need root (CAP_NET_RAW)",
        ) from None


def _in(netns: str | None) -> str:
    return "" if netns is None else f" in namespace {netns}"
