"""The monitor's fence of a stale primary, as a plan the engine runs like any other.

A stale primary is a database claiming the primary role at a site that is not the
active one (an old primary that came back after a failover). Promise 1 says no client
may reach it: the monitor fences it at once, whatever the policy, through a short run
of kind ``fence`` (same executor, lock, journal, report as a failover), made of the
routers' and pools' own steps for that site:

* every router in front of the database that has a server at the stale site fences it
  (already fenced: the step is skipped, and the run is the record that it was checked);
* every pool that sends its clients to the stale site holds them (PAUSE). A pool that
  points elsewhere is left alone: holding it would stall the active site's clients.

The steps are the drivers' (``Driver.steps`` for ``Phase.STOP_WRITES``); this module
only chooses the components and the order (routers, then pools), and says that a held
pool is never let go again by an undo: its step is a point of no return (a failure
stops the run for a person; ``abort`` refuses to resume the pool towards the stale
primary). Pure: same observation, same plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from failback.config import Service
from failback.drivers.base import Role
from failback.drivers.catalog import components_with_role, driver_of
from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.observed import ComponentObservation
from failback.model.plan import Plan, StepSpec

FENCE = "fence"
"""The kind of the runs this module plans (``failback runs`` shows it)."""

ROUTES_CLIENTS = "active"
"""A router's or pool's observed role at a site when it sends clients there."""


def routed_to(observed: Iterable[ComponentObservation], site: str) -> list[str]:
    """The routers and pools observed sending clients to ``site`` (names)."""
    return [
        o.component
        for o in observed
        if o.kind in (Role.ROUTER, Role.POOL) and o.site == site and o.role == ROUTES_CLIENTS
    ]


def fence_components(
    service: Service, observed: Iterable[ComponentObservation], stale_site: str
) -> list[tuple[str, Any]]:
    """(name, settings) of what the fence acts on: every pool observed pointing at the
    stale site first (its clients provably reach the stale primary: held before anything
    else can fail), then every router with a server there."""
    routed = set(routed_to(observed, stale_site))
    routers = [
        (name, settings)
        for name, settings in components_with_role(service, Role.ROUTER)
        if stale_site in settings.sites
    ]
    pools = [
        (name, settings)
        for name, settings in components_with_role(service, Role.POOL)
        if stale_site in settings.sites and name in routed
    ]
    return pools + routers


def plan_fence(
    service_name: str,
    service: Service,
    observed: Iterable[ComponentObservation],
    *,
    stale_site: str,
    active_site: str,
) -> Plan:
    """The fence run's plan (possibly without steps: nothing to fence at that site)."""
    observed = list(observed)
    steps: list[StepSpec] = []
    for name, settings in fence_components(service, observed, stale_site):
        request = PlanRequest(
            phase=Phase.STOP_WRITES,
            kind=RunKind.FENCE,
            component=name,
            settings=settings,
            from_site=stale_site,
            to_site=active_site,
            planned=False,
        )
        for step in driver_of(settings).steps(request):
            if step.site == stale_site and step.kind == "action":
                steps.append(_never_undone(step))
    return Plan(
        service=service_name,
        kind=FENCE,
        from_site=stale_site,
        to_site=active_site,
        steps=steps,
        notes=[
            f"{stale_site} claims the primary role while {active_site} holds it: its clients"
            " are fenced off (promise 1); the service stays where it is"
        ],
    )


def _never_undone(step: StepSpec) -> StepSpec:
    """A fence run's steps have no undo: undoing a router's fence or a pool's hold would
    send clients back to the stale primary. So a failed step rolls the run back without
    undoing what was fenced (the lock is released, the monitor tries again later), and
    nothing in it is a point of no return that would keep the service locked for a
    person. ``undo: false`` in a step's params is the engine's rule (the executor never
    undoes such a step), whatever the driver."""
    return step.model_copy(update={"params": {**step.params, "undo": False}})
