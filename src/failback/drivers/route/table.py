"""Read and change one prefix's route through rtnetlink (pyroute2), never by parsing ``ip``.

Everything here takes an open ``IPRoute`` (``namespace.open_netlink``) and speaks in
plain values: the next hop a prefix uses, the next hop the kernel would pick for one
address (``ip route get``), an interface's packet counters. ``replace`` is one
RTM_NEWROUTE with NLM_F_REPLACE|NLM_F_CREATE: the kernel swaps the route in one step,
so no packet ever finds the prefix without a route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from failback.drivers.route.errors import RouteError


@dataclass(frozen=True)
class NextHop:
    """Where the kernel sends a packet: a gateway (None: on-link) out of an interface."""

    gateway: str | None
    dev: str | None

    def describe(self) -> str:
        via = f"via {self.gateway}" if self.gateway else "on-link"
        return f"{via} dev {self.dev}" if self.dev else via


@dataclass(frozen=True)
class Counters:
    """An interface's packet counters (IFLA_STATS64)."""

    tx_packets: int
    rx_packets: int


def _netlink_error(exc: Exception, what: str) -> RouteError:
    code = getattr(exc, "code", None)
    text = getattr(exc, "strerror", None) or str(exc)
    if code == 1 or "Operation not permitted" in text:
        return RouteError(f"{what}: not permitted", hint="changing routes needs CAP_NET_ADMIN")
    return RouteError(f"{what}: {text}", hint="see `ip route` in the routing namespace")


def ifindex(ipr: Any, dev: str) -> int:
    """The index of interface ``dev``; ``RouteError`` when it does not exist."""
    found = ipr.link_lookup(ifname=dev)
    if not found:
        raise RouteError(f"interface {dev!r} does not exist", hint="check the path's dev:")
    return int(found[0])


def ifname(ipr: Any, index: int | None) -> str | None:
    if index is None:
        return None
    for link in ipr.link("get", index=index):
        return str(link.get("IFLA_IFNAME"))
    return None


def prefix_routes(ipr: Any, prefix: str, table: int) -> list[NextHop]:
    """The next hops of ``prefix``'s own route in ``table`` (several for a multipath
    route; none when the prefix has no route of its own there)."""
    network = ipaddress.IPv4Network(prefix)
    try:
        found = list(ipr.route("dump", table=table))
    except Exception as exc:  # NetlinkError, OSError
        raise _netlink_error(exc, f"cannot read table {table}") from None
    hops: list[NextHop] = []
    for route in found:
        if route.get("family") != 2 or route.get("dst_len") != network.prefixlen:
            continue
        dst = route.get("RTA_DST")
        if dst is None or ipaddress.IPv4Address(dst) != network.network_address:
            continue
        if (route.get("RTA_TABLE") or route.get("table")) != table:
            continue
        multipath = route.get("RTA_MULTIPATH")
        if multipath:
            for hop in multipath:
                hops.append(NextHop(hop.get("RTA_GATEWAY"), ifname(ipr, hop.get("oif"))))
        else:
            hops.append(NextHop(route.get("RTA_GATEWAY"), ifname(ipr, route.get("RTA_OIF"))))
    return hops


def lookup(ipr: Any, address: str) -> NextHop:
    """The next hop the kernel picks for ``address`` now (``ip route get``)."""
    try:
        found = list(ipr.route("get", dst=address))
    except Exception as exc:
        raise _netlink_error(exc, f"no route to {address}") from None
    if not found:
        raise RouteError(f"no route to {address}", hint="see `ip route get` in the namespace")
    route = found[0]
    return NextHop(route.get("RTA_GATEWAY"), ifname(ipr, route.get("RTA_OIF")))


def replace(ipr: Any, prefix: str, table: int, gateway: str, dev: str | None) -> None:
    """Point ``prefix`` at ``gateway`` (out of ``dev``) in one atomic replace."""
    spec: dict[str, Any] = {"dst": prefix, "gateway": gateway, "table": table}
    if dev is not None:
        spec["oif"] = ifindex(ipr, dev)
    try:
        ipr.route("replace", **spec)
    except Exception as exc:
        raise _netlink_error(exc, f"cannot route {prefix} via {gateway}") from None


def counters(ipr: Any, dev: str) -> Counters:
    """``dev``'s packet counters now."""
    index = ifindex(ipr, dev)
    for link in ipr.link("get", index=index):
        stats = link.get("IFLA_STATS64") or link.get("IFLA_STATS")
        if stats is not None:
            return Counters(int(stats["tx_packets"]), int(stats["rx_packets"]))
    raise RouteError(f"interface {dev!r} has no counters", hint="see `ip -s link`")
