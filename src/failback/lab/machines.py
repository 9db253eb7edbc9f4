"""Which machine runs each part of a lab: this one, or a site's namespace over SSH.

The single-host lab runs everything here. In the netns lab (``lab up --hosts netns``)
each site and the edge is its own machine: a process that must live on a site (its
PostgreSQL, its web app) is started through that machine's sshd, exactly as failback
reaches a real site, so it lives in that site's network namespace. Lab bookkeeping
(lab.json, secrets, the topology file) stays on this machine.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from failback.hosts import Host, LocalHost
from failback.hosts.ssh import SshHost, SshTarget

__all__ = ["EDGE", "LabMachines"]

EDGE = "edge"
"""The machine clients enter through: HAProxy and PgBouncer."""


class LabMachines:
    """``of("dc1")``, ``of("edge")``: the Host of one part of the lab (connected once)."""

    def __init__(self, network: dict[str, Any] | None) -> None:
        self.network = network
        self.local: Host = LocalHost()
        self._open: dict[str, SshHost] = {}

    def of(self, part: str) -> Host:
        """The machine of ``part`` (a site, or ``edge``): local without a network."""
        if self.network is None:
            return self.local
        if part not in self._open:
            machine = self.network["hosts"][part]
            ssh = self.network["ssh"]
            self._open[part] = SshHost(
                SshTarget(
                    name=f"lab-{part}",
                    address=machine["address"],
                    port=22,
                    user="root",
                    key_file=ssh["key"],
                    known_hosts_file=ssh["known_hosts"],
                    host_key=None,
                    jump=None,
                    become=None,
                    connect_timeout=5.0,
                )
            )
        return self._open[part]

    def forget(self, part: str) -> None:
        """Drop the connection to ``part`` (its machine died or was cut off)."""
        host = self._open.pop(part, None)
        if host is not None:
            host.close()

    def close(self) -> None:
        for part in list(self._open):
            self.forget(part)

    def __enter__(self) -> LabMachines:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
