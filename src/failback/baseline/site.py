"""Measure every machine of a site: what ``baseline record`` keeps and the gate compares.

A site's machines are the ones its services' components run on there (the topology's
``runs_on``; the local lab runs everything on ``local``, the netns lab reaches each site
over SSH). What is hashed is ``baseline:`` of the topology (shared items plus the site's
own) when recording; the clean room measures again exactly what the baseline declared,
so that a topology edited since cannot quietly compare less.
"""

from __future__ import annotations

import getpass
import time
from typing import Any

from failback.baseline.measure import MeasureFailed, measure_host
from failback.config import Topology
from failback.errors import UsageError
from failback.hosts import HostSet

__all__ = ["FORMAT", "declared_for", "measure_declared", "record_site"]

FORMAT = 1
"""Version of the baseline document (``files.py`` refuses another)."""


def declared_for(topology: Topology, site: str) -> dict[str, Any]:
    """What to hash at ``site``: machines, files and commands; UsageError when the topology
    declares nothing to hash or the site runs nothing."""
    topology.site(site)  # an unknown site: one line with did-you-mean
    if topology.baseline is None:
        raise UsageError(
            f"{topology.path.name} has no baseline: section: nothing to hash at {site}",
            "declare the files and commands that prove a site clean (docs/incident.md), "
            "e.g. baseline: {files: [/etc/passwd], commands: {packages: 'dpkg-query -W'}}",
        )
    items = topology.baseline.for_site(site)
    if not items.files and not items.commands:
        raise UsageError(
            f"baseline: declares no file and no command for {site}",
            f"add files: or commands: under baseline: (or baseline.sites.{site})",
        )
    machines = topology.site_hosts(site)
    if not machines:
        raise UsageError(
            f"no component of any service runs at {site}: no machine to hash",
            "give a component a site entry there, or the site a runs_on:",
        )
    return {
        "hosts": machines,
        "files": list(items.files),
        "commands": dict(items.commands),
        "timeout": float(topology.baseline.timeout),
        "max_output": int(topology.baseline.max_output),
    }


def measure_declared(hosts: HostSet, declared: dict[str, Any]) -> dict[str, Any]:
    """Each machine's measurement; a machine that cannot be measured is
    ``{"error": message, "hint": hint}`` (the caller decides what that means)."""
    measured: dict[str, Any] = {}
    for name in declared["hosts"]:
        try:
            measured[name] = measure_host(
                hosts.get(name),
                declared["files"],
                declared["commands"],
                timeout=float(declared["timeout"]),
                max_output=int(declared["max_output"]),
            )
        except MeasureFailed as exc:
            measured[name] = {"error": exc.message, "hint": exc.hint}
    return measured


def record_site(topology: Topology, hosts: HostSet, site: str) -> dict[str, Any]:
    """A baseline document of ``site`` as it is now; MeasureFailed when a machine cannot
    be measured (a baseline with a hole in it would prove nothing)."""
    declared = declared_for(topology, site)
    measured = measure_declared(hosts, declared)
    for name, facts in measured.items():
        if "error" in facts:
            raise MeasureFailed(
                f"cannot record the baseline of {site}: {facts['error']}",
                facts.get("hint") or f"fix the connection to {name} (failback hosts check)",
            )
    return {
        "format": FORMAT,
        "site": site,
        "recorded_at": time.time(),
        "recorded_by": getpass.getuser(),
        "topology": str(topology.path),
        "declared": declared,
        "hosts": measured,
    }
