"""The ``route`` driver: a prefix's Linux route moved between two network paths."""

from __future__ import annotations

import time
from typing import ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.planning import PlanCheck, PlanRequest, RunKind
from failback.drivers.route.actions import ROUTE_ACTIONS
from failback.drivers.route.facts import observe_route
from failback.drivers.route.settings import RouteComponent
from failback.drivers.route.steps import route_steps
from failback.errors import PlanRefused
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class RouteDriver(Driver[RouteComponent]):
    name = "route"
    Settings = RouteComponent
    actions = ROUTE_ACTIONS
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def role(self, settings: RouteComponent) -> Role:
        """A path is a part of its site (its failure is the site's), switched where an
        operator's command would be: see ``steps``."""
        return Role.OPERATOR

    def observe(
        self, host: Host, service: str, name: str, settings: RouteComponent, site: str
    ) -> ComponentObservation:
        return observe_route(host, name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return route_steps(request)

    @staticmethod
    def _refuse_unstable(check: PlanCheck) -> None:
        """A running monitor saw the primary path fail within the stability window: not
        stable yet, refused with how long is left. Without a monitor's history the
        failback's stability gate waits for it instead."""
        key = f"{check.component}@{check.to_site}"
        if key not in check.state.passing_since:
            return
        window = float(check.service.policy.stability_window)
        since = check.state.passing_since[key]
        if since is None:
            raise PlanRefused(
                f"{check.component}: the primary path {check.to_site} is not stable: the "
                "monitor sees it failing",
                hint=f"wait until it has been healthy for the stability window ({window:g}s)",
            )
        healthy_for = time.time() - since
        if healthy_for < window:
            raise PlanRefused(
                f"{check.component}: the primary path {check.to_site} is not stable yet: "
                f"healthy for {healthy_for:.1f}s of its {window:g}s stability window",
                hint=f"try again in {window - healthy_for:.0f}s or more",
            )

    def check_plan(self, check: PlanCheck) -> list[str]:
        """Refuse to move the prefix onto a path that does not answer.

        A failback is refused while the primary path is unhealthy (its stability window
        cannot even start); a failover while the other path is down too, unless
        ``--force`` (a route pointing at a dead path helps nobody).
        """
        seen = check.state.get(check.component, check.to_site)
        if seen is not None and seen.healthy:
            if check.kind is RunKind.FAILBACK:
                self._refuse_unstable(check)
            return []
        why = seen.detail if seen is not None else "not observed"
        if check.kind is RunKind.FAILBACK:
            window = float(check.service.policy.stability_window)
            raise PlanRefused(
                f"{check.component}: the primary path {check.to_site} is unhealthy: {why}",
                hint=f"repair it; a failback then waits until it has been healthy for the "
                f"stability window ({window:g}s) before the route moves",
            )
        if check.kind is RunKind.FAILOVER and not check.force:
            raise PlanRefused(
                f"{check.component}: {check.to_site}'s path is unhealthy too: {why}",
                hint="repair that path first, or --force to move the route anyway",
            )
        return [f"{check.component}: {check.to_site}'s path is unhealthy: {why}"]
