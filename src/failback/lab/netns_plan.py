"""The netns lab's network on paper: names and addresses, derived from the lab directory.

Several labs run on one machine at once (pytest-xdist workers, a demo next to the
tests), so every name the kernel sees carries a short id hashed from the lab's
directory: bridge ``fb<id>``, namespaces ``fb<id>-dc1``..., root-side veth ends
``v<id><nn>``. Linux caps interface names at 15 characters (IFNAMSIZ - 1); with an
8-hex-digit id the longest is 11. The namespace end of each veth is called ``eth0``:
it lives alone in its namespace, so it cannot collide, and it reads like a machine.

Addresses come from 10.211.0.0/16, a range used only between the lab's namespaces
and the root namespace: one /24 per lab, whose slot starts at the id's hash and moves
on past slots already used on the machine. The bridge (root namespace) holds ``.1``
so that the orchestrator reaches every machine and every machine reaches it; the
machines hold ``.10``, ``.20``, ``.30``...

Everything here is pure: reading the machine (which slots are used) is
``failback.lab.netns``'s job, which passes what it saw to ``choose_subnet``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failback.lab.errors import LabError

SUPERNET = ipaddress.IPv4Network("10.211.0.0/16")
"""Where every lab's /24 is carved from; nothing outside the lab should use it."""
PREFIX = 24
HOSTS = ("dc1", "dc2", "edge")
"""The machines of a netns lab: one per site, and the edge (HAProxy, PgBouncer)."""
NS_INTERFACE = "eth0"
"""The namespace end of each veth: alone in its namespace, so the name cannot collide."""
IFNAME_MAX = 15
"""Linux's limit on interface names (IFNAMSIZ 16, NUL included)."""
ID_LENGTH = 8
_HOST_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class HostPlan:
    """One machine of the lab: its namespace, its address, and its link to the bridge."""

    name: str
    netns: str
    address: str
    veth: str
    """The root-namespace end of its veth pair, a port of the bridge (partitions act here)."""
    mac: str
    """The machine's own MAC (its ``eth0``): fixed, so a veth made again keeps it and
    what its peers' ARP caches hold stays true."""
    interface: str = NS_INTERFACE
    """The namespace end of the pair, as the machine sees it."""

    def to_dict(self) -> dict[str, str]:
        return {
            "netns": self.netns,
            "address": self.address,
            "veth": self.veth,
            "mac": self.mac,
            "interface": self.interface,
        }


@dataclass(frozen=True)
class NetPlan:
    """The whole network of one lab; ``to_dict`` is what lab.json keeps as ``network``."""

    id: str
    bridge: str
    bridge_mac: str
    """Fixed too: a bridge otherwise takes its lowest port's MAC, which changes as
    machines come and go, and the machines' ARP entries for ``.1`` would go stale."""
    subnet: str
    root_address: str
    hosts: dict[str, HostPlan]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.subnet).prefixlen

    def host(self, name: str) -> HostPlan:
        """The machine ``name``; ``LabError`` naming the lab's machines otherwise."""
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(
                f"the netns lab has no machine {name!r}",
                hint=f"use one of: {', '.join(self.hosts)}",
            ) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bridge": self.bridge,
            "bridge_mac": self.bridge_mac,
            "subnet": self.subnet,
            "root_address": self.root_address,
            "hosts": {name: host.to_dict() for name, host in self.hosts.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetPlan:
        """Read back ``to_dict`` (e.g. lab.json's ``network``; extra keys are ignored)."""
        return cls(
            id=str(data["id"]),
            bridge=str(data["bridge"]),
            bridge_mac=str(data["bridge_mac"]),
            subnet=str(data["subnet"]),
            root_address=str(data["root_address"]),
            hosts={
                name: HostPlan(
                    name=name,
                    netns=str(host["netns"]),
                    address=str(host["address"]),
                    veth=str(host["veth"]),
                    mac=str(host["mac"]),
                    interface=str(host.get("interface", NS_INTERFACE)),
                )
                for name, host in data["hosts"].items()
            },
        )


def lab_id(directory: str | os.PathLike[str]) -> str:
    """A short id for the lab in ``directory``: the same directory always gets the same one."""
    path = os.path.realpath(Path(directory))
    return hashlib.sha256(path.encode()).hexdigest()[:ID_LENGTH]


def mac(lab: str, n: int) -> str:
    """``02:<id>:<n>``: a locally administered unicast MAC, unique to the lab and machine
    (0 is the bridge, 1.. the machines); veth bridge ends use ``0x80 + n``."""
    octets = [0x02, *bytes.fromhex(lab[:8]), n]
    return ":".join(f"{octet:02x}" for octet in octets)


def bridge_end_mac(machine_mac: str) -> str:
    """The MAC of the bridge end of a machine's veth: the machine's, last octet + 0x80."""
    head, last = machine_mac.rsplit(":", 1)
    return f"{head}:{int(last, 16) | 0x80:02x}"


def choose_subnet(
    lab: str, used: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> ipaddress.IPv4Network:
    """The first /24 of SUPERNET from the id's slot on that overlaps nothing in ``used``.

    Starting at a slot hashed from the id makes two labs planned at the same moment
    unlikely to pick the same /24; ``used`` (addresses and routes seen on the machine,
    other labs' bridges among them) rules out what is already taken.
    """
    taken = [net for net in used if isinstance(net, ipaddress.IPv4Network)]
    slots = list(SUPERNET.subnets(new_prefix=PREFIX))
    start = int(lab, 16) % len(slots)
    for offset in range(len(slots)):
        candidate = slots[(start + offset) % len(slots)]
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise LabError(
        f"no free /{PREFIX} left in {SUPERNET} for a netns lab",
        hint="take other netns labs down (failback lab down --purge), or free that range",
    )


def make_plan(
    directory: str | os.PathLike[str],
    subnet: ipaddress.IPv4Network,
    hosts: Sequence[str] = HOSTS,
) -> NetPlan:
    """Names and addresses of the lab in ``directory`` on ``subnet``; checks the limits."""
    lab = lab_id(directory)
    if subnet.prefixlen != PREFIX or not subnet.subnet_of(SUPERNET):
        raise LabError(f"{subnet} is not a /{PREFIX} of {SUPERNET}", hint="a bug in the lab")
    if not hosts or len(hosts) > 25 or len(set(hosts)) != len(hosts):
        raise LabError(f"a netns lab needs 1 to 25 distinct machines, got {list(hosts)}")
    machines: dict[str, HostPlan] = {}
    for n, name in enumerate(hosts, start=1):
        if not _HOST_NAME.match(name):
            raise LabError(
                f"machine name {name!r} cannot name a namespace",
                hint="use lowercase letters, digits and '-', starting with a letter (<= 20)",
            )
        machines[name] = HostPlan(
            name=name,
            netns=f"fb{lab}-{name}",
            address=str(subnet.network_address + 10 * n),
            veth=f"v{lab}{n:02d}",
            mac=mac(lab, n),
        )
    plan = NetPlan(
        id=lab,
        bridge=f"fb{lab}",
        bridge_mac=mac(lab, 0),
        subnet=str(subnet),
        root_address=str(subnet.network_address + 1),
        hosts=machines,
    )
    for ifname in (plan.bridge, *(m.veth for m in machines.values())):
        if len(ifname) > IFNAME_MAX:  # pragma: no cover - guarded by ID_LENGTH
            raise LabError(f"interface name {ifname!r} is longer than {IFNAME_MAX}")
    return plan
