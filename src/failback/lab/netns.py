"""The netns lab's network: one namespace per machine, a veth each, one bridge, on Linux.

Each machine of the lab (dc1, dc2, the edge) is a network namespace whose ``eth0`` is
one end of a veth pair; the other end is a port of a bridge in the root namespace,
which holds the subnet's ``.1``. So the orchestrator (and the tests), running in the
root namespace, reach every machine by its address, the machines reach each other
across the bridge, and their default route leads back to the root namespace.

``up`` and ``down`` compare the machine with the plan (``ip -j``) and only do what is
missing, so running either twice is a no-op and a half-built lab is completed (or
cleared). Faults act on the same objects: ``kill_all`` SIGKILLs every process of a
namespace (a machine dies), ``link_down`` sets the bridge side of a machine's veth
down (its cable is pulled: no packet in or out, its processes keep running).

``kill_all``, ``pids`` and ``identify`` come from ``failback.lab.nsproc`` (the
processes of a namespace) and are re-exported here, the lab's one entry point for
its network.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from failback.lab import sshd
from failback.lab.errors import LabError
from failback.lab.netns_plan import (
    HOSTS,
    NetPlan,
    bridge_end_mac,
    choose_subnet,
    lab_id,
    make_plan,
)
from failback.lab.nsproc import identify, kill_all, pids
from failback.lab.syscmd import run, run_json

__all__ = [
    "NetPlan",
    "down",
    "identify",
    "is_partitioned",
    "kill_all",
    "leftovers",
    "link_down",
    "link_up",
    "netns_available",
    "pids",
    "plan_for",
    "plan_from_dict",
    "require_available",
    "up",
]

_LOCK_FILE = Path("/run/lock/failback-netns.lock")
_IP_HINT = "the netns lab needs root and iproute2 (ip netns); see docs/lab.md"


# --------------------------------------------------------------------- availability


@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether this machine can run a netns lab, and if not, why (for a visible skip).

    Root, ``ip netns`` that really creates a namespace with a bridge and a veth
    (probed inside a throw-away namespace, so the root namespace is not touched),
    and OpenSSH's sshd and client tools.
    """
    if os.geteuid() != 0:
        return False, "the netns lab needs root (ip netns)"
    if shutil.which("ip") is None:
        return False, "iproute2's ip is not installed (apt-get install iproute2)"
    missing = sshd.missing_programs()
    if missing:
        return False, f"{', '.join(missing)} not installed (apt-get install openssh-server)"
    probe = f"fbprobe-{os.getpid()}"
    try:
        run(["ip", "netns", "add", probe], timeout=10)
        try:
            run(["ip", "-n", probe, "link", "add", "p0", "type", "bridge"], timeout=10)
            run(["ip", "-n", probe, "link", "add", "p1", "type", "veth", "peer", "p2"], timeout=10)
        finally:
            run(["ip", "netns", "del", probe], check=False, timeout=10)
    except LabError as exc:
        return False, f"ip netns does not work here: {exc.message}"
    return True, "root, ip netns, bridge, veth and sshd are available"


def require_available() -> None:
    """``LabError`` with the reason when ``netns_available`` says no."""
    ok, why = netns_available()
    if not ok:
        raise LabError(why, hint="run the netns lab as root on Linux, after scripts/setup.sh")


# ----------------------------------------------------------------------------- plan


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise planning and building between labs, so two never claim one subnet."""
    _LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def plan_for(directory: str | os.PathLike[str], hosts: Sequence[str] = HOSTS) -> NetPlan:
    """The network of the lab in ``directory``: names from its path, a free /24.

    When the lab's bridge already exists (the lab is up, or half-built), its subnet is
    kept, so planning again gives the same plan. lab.json keeps ``to_dict()`` anyway.
    """
    require_available()
    bridge = f"fb{lab_id(directory)}"
    with _machine_lock():
        used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for link in run_json(["ip", "-j", "-4", "addr", "show"]):
            for info in link.get("addr_info", []):
                net = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
                if link.get("ifname") == bridge and net.prefixlen == 24:
                    return make_plan(directory, ipaddress.IPv4Network(net), hosts)
                used.append(net)
        for route in run_json(["ip", "-j", "-4", "route", "show", "table", "all"]):
            dst = route.get("dst", "default")
            if dst != "default" and route.get("type", "unicast") == "unicast":
                used.append(ipaddress.ip_network(dst, strict=False))
        return make_plan(directory, choose_subnet(lab_id(directory), used), hosts)


def plan_from_dict(data: dict[str, Any]) -> NetPlan:
    """The plan kept in lab.json (``network``), read back for ``down`` and the faults."""
    return NetPlan.from_dict(data)


# ------------------------------------------------------------------------ up / down


def _links(netns: str | None = None) -> dict[str, dict[str, Any]]:
    argv = ["ip", "-j", "link", "show"] if netns is None else ["ip", "-n", netns, "-j", "link"]
    return {link["ifname"]: link for link in run_json(argv)}


def _namespaces() -> set[str]:
    return {entry["name"] for entry in run_json(["ip", "-j", "netns", "list"])}


def _ipv4(netns: str | None, ifname: str) -> set[str]:
    argv = ["ip", "-j", "-4", "addr", "show", "dev", ifname]
    if netns is not None:
        argv[1:1] = ["-n", netns]
    return {
        f"{info['local']}/{info['prefixlen']}"
        for link in run_json(argv)
        for info in link.get("addr_info", [])
    }


def _is_up(link: dict[str, Any]) -> bool:
    return "UP" in link.get("flags", [])


class _Actions:
    """Runs the commands ``up``/``down`` decided on, and remembers them (for the caller)."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def __call__(self, *argv: str) -> None:
        run(argv, hint=_IP_HINT)
        self.done.append(" ".join(argv))


def up(plan: NetPlan) -> list[str]:
    """Build what is missing of ``plan``; return the commands that were needed.

    An empty list means the network was already complete. A machine whose link was set
    down (a partition) is brought back up: ``up`` builds the whole plan.
    """
    require_available()
    act = _Actions()
    with _machine_lock():
        _check_subnet_free(plan)
        links = _links()
        cidr = f"{plan.root_address}/{plan.prefixlen}"
        if plan.bridge not in links:
            act(
                "ip", "link", "add", plan.bridge, "address", plan.bridge_mac,
                "type", "bridge", "forward_delay", "0",
            )  # fmt: skip
            links = _links()
        if links[plan.bridge].get("address") != plan.bridge_mac:
            act("ip", "link", "set", plan.bridge, "address", plan.bridge_mac)
        if cidr not in _ipv4(None, plan.bridge):
            act("ip", "addr", "replace", cidr, "dev", plan.bridge)
        if not _is_up(links[plan.bridge]):
            act("ip", "link", "set", plan.bridge, "up")
        namespaces = _namespaces()
        for host in plan.hosts.values():
            if host.netns not in namespaces:
                act("ip", "netns", "add", host.netns)
            _up_machine(plan, host.name, links, act)
    return act.done


def _up_machine(plan: NetPlan, name: str, links: dict[str, Any], act: _Actions) -> None:
    host = plan.hosts[name]
    inside = _links(host.netns)
    root_end = links.get(host.veth)
    ns_end = inside.get(host.interface)
    paired = (
        root_end is not None
        and ns_end is not None
        and ns_end.get("link_index") == root_end.get("ifindex")
    )
    if not paired:  # half-built: clear what is there, make the pair again
        if root_end is not None:
            act("ip", "link", "del", host.veth)
        if ns_end is not None and host.interface in _links(host.netns):
            act("ip", "-n", host.netns, "link", "del", host.interface)
        act(
            "ip", "link", "add", host.veth, "address", bridge_end_mac(host.mac), "type", "veth",
            "peer", "name", host.interface, "address", host.mac, "netns", host.netns,
        )  # fmt: skip
        root_end = _links()[host.veth]
        inside = _links(host.netns)
    assert root_end is not None
    if inside[host.interface].get("address") != host.mac:
        act("ip", "-n", host.netns, "link", "set", host.interface, "address", host.mac)
    if root_end.get("master") != plan.bridge:
        act("ip", "link", "set", host.veth, "master", plan.bridge)
    if not _is_up(root_end):
        act("ip", "link", "set", host.veth, "up")
    cidr = f"{host.address}/{plan.prefixlen}"
    if not _is_up(inside["lo"]):
        act("ip", "-n", host.netns, "link", "set", "lo", "up")
    if cidr not in _ipv4(host.netns, host.interface):
        act("ip", "-n", host.netns, "addr", "replace", cidr, "dev", host.interface)
    if not _is_up(inside[host.interface]):
        act("ip", "-n", host.netns, "link", "set", host.interface, "up")
    routes = run_json(["ip", "-n", host.netns, "-j", "-4", "route", "show", "default"])
    if not any(r.get("gateway") == plan.root_address for r in routes):
        act("ip", "-n", host.netns, "route", "replace", "default", "via", plan.root_address)


def _check_subnet_free(plan: NetPlan) -> None:
    """Refuse to build on a /24 that another interface took since the plan was made."""
    subnet = ipaddress.IPv4Network(plan.subnet)
    for link in run_json(["ip", "-j", "-4", "addr", "show"]):
        if link.get("ifname") == plan.bridge:
            continue
        for info in link.get("addr_info", []):
            if ipaddress.ip_address(info["local"]) in subnet:
                raise LabError(
                    f"{plan.subnet} (netns lab {plan.id}) is already used by {link['ifname']}",
                    hint="take this lab down and plan it again: a new plan picks a free /24",
                )


def down(plan: NetPlan, *, timeout: float = 15.0) -> list[str]:
    """Remove every process, namespace and link of ``plan``; return the commands needed.

    Processes go first (SIGKILL, waited for), so that deleting a namespace really frees
    it and nothing of the lab keeps running detached from any network.
    """
    require_available()
    act = _Actions()
    namespaces = _namespaces()
    for host in plan.hosts.values():
        if host.netns in namespaces:
            kill_all(host.netns, timeout=timeout)
    links = _links()
    for host in plan.hosts.values():
        if host.veth in links:
            act("ip", "link", "del", host.veth)  # its peer, inside, goes with it
        if host.netns in namespaces:
            act("ip", "netns", "del", host.netns)
    if plan.bridge in links:
        act("ip", "link", "del", plan.bridge)
    left = leftovers(plan)
    if left:
        raise LabError(
            f"netns lab {plan.id} is not fully down: {', '.join(left)}",
            hint="run lab down again; see ip netns list and ip link",
        )
    return act.done


def leftovers(plan: NetPlan) -> list[str]:
    """What of ``plan`` still exists on the machine: namespaces, links, processes."""
    left: list[str] = []
    namespaces = _namespaces()
    links = _links()
    for host in plan.hosts.values():
        if host.netns in namespaces:
            left.append(f"namespace {host.netns}")
            left.extend(f"process {pid}" for pid in pids(host.netns))
        if host.veth in links:
            left.append(f"link {host.veth}")
    if plan.bridge in links:
        left.append(f"link {plan.bridge}")
    return left


# ---------------------------------------------------------------------------- links


def link_down(plan: NetPlan, site: str) -> None:
    """Cut ``site`` off the network: the bridge side of its veth goes down.

    The machine keeps its address and its processes; its ``eth0`` loses carrier, so
    nothing it sends leaves and nothing reaches it (the switch port is disabled). Peers
    see timeouts, not refusals, as with a pulled cable.
    """
    host = plan.host(site)
    link = _machine_link(plan, site)
    if _is_up(link):
        run(["ip", "link", "set", host.veth, "down"], hint=_IP_HINT)


def link_up(plan: NetPlan, site: str) -> None:
    """Put ``site`` back on the network (the bridge side of its veth up again)."""
    host = plan.host(site)
    link = _machine_link(plan, site)
    if not _is_up(link):
        run(["ip", "link", "set", host.veth, "up"], hint=_IP_HINT)


def is_partitioned(plan: NetPlan, site: str) -> bool:
    """True while ``site``'s link is set down (by ``link_down``)."""
    return not _is_up(_machine_link(plan, site))


def _machine_link(plan: NetPlan, site: str) -> dict[str, Any]:
    host = plan.host(site)
    found = run_json(["ip", "-j", "link", "show"])
    for link in found:
        if link.get("ifname") == host.veth:
            return link
    raise LabError(
        f"{site}'s link {host.veth} does not exist",
        hint="is the netns lab up? (failback lab up --hosts netns)",
    )
