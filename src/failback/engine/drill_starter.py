"""Observe, plan and check a drill before its run is created (``failback drill``).

The same path for the CLI and the API. Everything a drill can be refused for is
found here, before anything exists: the plan's refusals (active site, unknown site,
unhealthy standby) and the driver's look at the standby's machine (free space, a
directory the PostgreSQL user can use). A refused drill leaves no run behind.
"""

from __future__ import annotations

from typing import Any

from failback.config import Topology
from failback.drivers.catalog import driver_of
from failback.engine.executor import Executor
from failback.errors import UsageError
from failback.hosts import HostSet
from failback.model.durations import MAX_TIMEOUT, parse_duration
from failback.model.plan import Plan
from failback.observe.service import observe_service
from failback.plan.drill import plan_drill
from failback.store import Journal


def keep_for_seconds(text: str) -> float:
    """``--keep-for``: a duration (0s .. 7d); a one-line refusal otherwise."""
    try:
        return parse_duration(text, maximum=MAX_TIMEOUT)
    except ValueError as exc:
        raise UsageError(
            f"--keep-for {text!r}: {exc}",
            hint="a duration such as 0s, 90s, 10m or 1h (how long the copy stays up)",
        ) from None


def make_drill_plan(
    service: str,
    topology: Topology,
    journal: Journal,
    *,
    site: str | None = None,
    keep_for_s: float = 0.0,
    parent: str | None = None,
    hosts: HostSet | None = None,
) -> tuple[Plan, dict[str, Any]]:
    """The drill's plan and what the drivers found on the standby's machine; refuses
    (PlanRefused, UsageError) having changed nothing."""
    svc = topology.service(service)  # an unknown service is refused before observing
    opened = hosts or topology.open_hosts()
    try:
        state = observe_service(opened, topology, service, journal)
        plan = plan_drill(service, svc, state, site=site, keep_for_s=keep_for_s, parent=parent)
        found: dict[str, Any] = {}
        for name in dict.fromkeys(s.component for s in plan.steps if s.component):
            settings = svc.components[name]
            host = opened.for_component(settings, plan.to_site)
            found[name] = driver_of(settings).drill_precheck(settings, plan.to_site, host, parent)
        return plan, found
    finally:
        if hosts is None:
            opened.close()


def create_drill_run(executor: Executor, topology: Topology, plan: Plan, **options: Any) -> int:
    """Record the drill's run; it holds the drill lock, never the service's
    (``model/locks.py``): a failover can start while a drill runs."""
    return executor.create(
        topology, plan, {"from_site": plan.from_site, "to_site": plan.to_site, **options}
    )
