"""A service's status as every interface shows it: observed state, current run, switches.

``monitor`` is failback.monitor.liveness.monitor_document, exactly as ``failback status
--json`` shows it (heartbeat, decisions, health of each probe with its history).

``failback status``, the HTTP API, its server-sent events, the dashboard and the
Prometheus metrics all need the same picture (where the service runs, each
component's role and health, replication lag, the router's traffic split, the run
holding the service, whether automatic failback is suspended). It is computed here,
once, so that no interface holds logic of its own and none can disagree with another.
"""

from __future__ import annotations

import time
from typing import Any

from failback.config import Service, Topology
from failback.drivers.base import Role
from failback.engine.executor import Executor
from failback.hosts import HostSet
from failback.monitor.liveness import monitor_document
from failback.observe.service import observe_service
from failback.report.drills import drill_summary
from failback.store import Journal

AUTO_FAILBACK_KEY = "auto_failback"
"""service_state key of the operator's switch (see docs/api.md, "automatic failback")."""


def auto_failback_state(service: Service, recorded: dict[str, Any]) -> dict[str, Any]:
    """The policy, the operator's switch, and what they give together.

    The switch can only *suspend* automatic failback: a service whose policy is
    ``failback: manual`` is never failed back by the monitor, whatever the switch says.
    """
    policy = service.policy.failback
    switch = recorded.get(AUTO_FAILBACK_KEY) or {}
    enabled = bool(switch.get("enabled", True))
    return {
        "policy": policy,
        "enabled": enabled,
        "effective": policy == "automatic" and enabled,
        "reason": switch.get("reason"),
        "by": switch.get("by"),
        "at": switch.get("at"),
    }


def set_auto_failback(
    journal: Journal, topology: Topology, service_name: str, *, enabled: bool, reason: str, by: str
) -> dict[str, Any]:
    """Record the operator's switch in the journal, where the monitor reads it."""
    service = topology.service(service_name)
    switch = {"enabled": enabled, "reason": reason, "by": by, "at": time.time()}
    # never rewrites the active site (a run may record a new one meanwhile)
    journal.update_service_data(service_name, service.primary_site, **{AUTO_FAILBACK_KEY: switch})
    word = "enabled" if enabled else "disabled"
    journal.add_event(
        f"auto_failback.{word}",
        f"automatic failback of {service_name} {word} by {by}" + (f": {reason}" if reason else ""),
        service=service_name,
        data=switch,
    )
    return auto_failback_state(service, journal.service_state(service_name) or {})


def traffic_split(components: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per router or tier that reports weights: each site's weight and share of new sessions."""
    split: dict[str, dict[str, Any]] = {}
    for comp in components:
        data = comp.get("data") or {}
        if comp.get("kind") not in (Role.ROUTER, Role.TIER) or "takes_new_sessions" not in data:
            continue
        weight = data.get("weight")
        takes = bool(data.get("takes_new_sessions"))
        split.setdefault(comp["component"], {})[comp["site"]] = {
            "weight": weight,
            "takes_new_sessions": takes,
            "effective_weight": (weight or 0) if takes else 0,
        }
    for sites in split.values():
        total = sum(s["effective_weight"] for s in sites.values())
        for s in sites.values():
            s["share"] = (s["effective_weight"] / total) if total else 0.0
    return split


def service_status(
    hosts: HostSet, topology: Topology, service_name: str, journal: Journal, executor: Executor
) -> dict[str, Any]:
    """Observe one service (read-only) and add the run holding it and its switches."""
    service = topology.service(service_name)
    state = observe_service(hosts, topology, service_name, journal)
    recorded = journal.service_state(service_name) or {}
    doc = state.model_dump(mode="json")
    doc["degraded"] = state.degraded
    doc["sites"] = service.sites
    doc["current_run"] = None
    holder = journal.lock_holder(service_name)
    if holder is not None:
        run = journal.get_run(holder)
        doc["current_run"] = {
            "id": run.id,
            "kind": run.kind,
            "status": executor.effective_status(run),
        }
        if run.status == "observing" and run.values.get("undo_until"):
            doc["current_run"]["undo_until"] = run.values["undo_until"]
    for comp in doc["components"]:
        data = comp.get("data") or {}
        comp["lag_bytes"] = data.get("lag_bytes")
        comp["lag_seconds"] = data.get("lag_seconds")
    doc["traffic"] = traffic_split(doc["components"])
    doc["auto_failback"] = auto_failback_state(service, recorded)
    # the primary's position as the monitor last saw it (what a failover measures loss from)
    doc["last_primary"] = recorded.get("last_primary")
    doc["monitor"] = monitor_document(journal, service, doc)
    within = service.policy.require_drill_within
    doc["drill"] = drill_summary(journal, service_name, None if within is None else float(within))
    last = doc["drill"]["last"]
    if last is not None and last["finished_at"] is None:  # running, or its runner died
        last["status"] = executor.effective_status(journal.get_run(int(last["id"])))
    return doc
