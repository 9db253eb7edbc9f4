"""The netns lab's control plane on paper: three etcd members and the monitors' places.

``lab up --hosts netns --control-plane`` adds a third machine, ``witness`` (a namespace
on the lab's bridge like dc1 and dc2, with its own address and sshd, that runs no
database), and one etcd member on each of dc1, dc2 and the witness: with the witness,
either site alone still leaves a majority (two of three), and a site cut off the
network is the minority. Each member listens on its machine's own address (client
port 2379, peer port 2380: each machine is a network namespace of its own, so the
well-known ports are free there), keeps its data in ``DIR/etcd/<machine>/data`` and
its log in ``DIR/etcd/<machine>/etcd.log``.

``DIR/monitors/<machine>/`` is where ``lab monitors up`` keeps each monitor's state
directory, event log, console output and PID.

Everything here is pure: which machine runs what, and the topology's
``control_plane:`` section. Starting and stopping is ``lab.etcd`` and ``lab.monitors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

WITNESS = "witness"
"""The third machine: an etcd member and a monitor, no database, outside both sites."""
MEMBERS = ("dc1", "dc2", WITNESS)
"""The machines that run an etcd member and a monitor, in this order."""
CLIENT_PORT = 2379
PEER_PORT = 2380
PREFIX = "/failback/lab"
LEASE_TTL = 3
COMPACTION_RETENTION = 1000
"""Revisions etcd keeps (``--auto-compaction-mode=revision``): leases and leader keys
are rewritten all the time, and the history of a lab is of no use to anyone."""


@dataclass(frozen=True)
class LabMember:
    """One etcd member: on which machine, at which address, with which files."""

    name: str
    netns: str
    address: str
    dir: str
    """``DIR/etcd/<name>``: its data directory, log and PID file."""

    @property
    def data_dir(self) -> str:
        return str(Path(self.dir) / "data")

    @property
    def log_file(self) -> str:
        return str(Path(self.dir) / "etcd.log")

    @property
    def pid_file(self) -> str:
        return str(Path(self.dir) / "etcd.pid")

    @property
    def client_url(self) -> str:
        return f"http://{self.address}:{CLIENT_PORT}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.address}:{PEER_PORT}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "netns": self.netns,
            "address": self.address,
            "dir": self.dir,
            "client_url": self.client_url,
            "peer_url": self.peer_url,
            "data_dir": self.data_dir,
            "log_file": self.log_file,
        }


@dataclass(frozen=True)
class LabMonitorPlace:
    """Where ``lab monitors up`` keeps one machine's monitor: ``DIR/monitors/<name>``."""

    name: str
    netns: str
    dir: str

    @property
    def state_dir(self) -> str:
        return str(Path(self.dir) / "state")

    @property
    def log_file(self) -> str:
        """The monitor's JSON-lines events (``--log-file``)."""
        return str(Path(self.dir) / "monitor.log")

    @property
    def console_file(self) -> str:
        """Its stdout and stderr: where a monitor that cannot start says why."""
        return str(Path(self.dir) / "console.log")

    @property
    def pid_file(self) -> str:
        return str(Path(self.dir) / "monitor.pid")


@dataclass(frozen=True)
class LabControlPlane:
    """The lab's etcd cluster and monitors; ``to_dict`` is what lab.json keeps."""

    dir: str
    """``DIR/etcd``."""
    monitors_dir: str
    """``DIR/monitors``."""
    token: str
    """``--initial-cluster-token``: the lab's id, so two labs' members never join up."""
    members: dict[str, LabMember]
    prefix: str = PREFIX
    lease_ttl: int = LEASE_TTL

    @property
    def witness(self) -> LabMember:
        return self.members[WITNESS]

    @property
    def endpoints(self) -> list[str]:
        return [member.client_url for member in self.members.values()]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{name}={m.peer_url}" for name, m in self.members.items())

    def monitor(self, name: str) -> LabMonitorPlace:
        member = self.members[name]
        return LabMonitorPlace(name, member.netns, str(Path(self.monitors_dir) / name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "monitors_dir": self.monitors_dir,
            "token": self.token,
            "prefix": self.prefix,
            "lease_ttl": self.lease_ttl,
            "endpoints": self.endpoints,
            "witness": {"netns": self.witness.netns, "address": self.witness.address},
            "members": {name: m.to_dict() for name, m in self.members.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabControlPlane:
        return cls(
            dir=str(data["dir"]),
            monitors_dir=str(data["monitors_dir"]),
            token=str(data["token"]),
            members={
                name: LabMember(
                    name=name,
                    netns=str(m["netns"]),
                    address=str(m["address"]),
                    dir=str(m["dir"]),
                )
                for name, m in data["members"].items()
            },
            prefix=str(data.get("prefix", PREFIX)),
            lease_ttl=int(data.get("lease_ttl", LEASE_TTL)),
        )

    def topology_section(self, sites: list[str]) -> dict[str, Any]:
        """The topology's ``control_plane:`` (schema: failback.config.control_plane)."""
        return {
            "etcd": {"endpoints": self.endpoints},
            "prefix": self.prefix,
            "lease_ttl": self.lease_ttl,
            "peer_token": f"file:{self.peer_token_file}",
            "nodes": {
                name: {
                    **({"site": name} if name in sites else {}),
                    "peer": f"{member.address}:{FAILSAFE_PORT}",
                }
                for name, member in self.members.items()
            },
        }

    @property
    def peer_token_file(self) -> str:
        """The token monitors present to each other's failsafe address (secrets/)."""
        return str(Path(self.dir).parent / "secrets" / "peer.token")


FAILSAFE_PORT = 2390
"""Where each machine's monitor answers the other nodes directly (failsafe)."""


def plan_control_plane(directory: Path, network: dict[str, Any]) -> LabControlPlane:
    """The control plane of the netns lab in ``directory`` whose machines are ``network``
    (lab.json's ``network``: it must hold the witness machine)."""
    hosts = network["hosts"]
    base = Path(directory)
    return LabControlPlane(
        dir=str(base / "etcd"),
        monitors_dir=str(base / "monitors"),
        token=f"failback-lab-{network['id']}",
        members={
            name: LabMember(
                name=name,
                netns=str(hosts[name]["netns"]),
                address=str(hosts[name]["address"]),
                dir=str(base / "etcd" / name),
            )
            for name in MEMBERS
        },
    )
