"""The steps a ``route`` component contributes, phase by phase.

A network path plays the operator's part in a procedure (``Role.OPERATOR``): its
failure is a failure of the site (the monitor fails over on it, the stability gate waits
for it), and it acts where an operator's commands would: the route moves in PROMOTE
(the site gaining the role becomes the prefix's next hop, in one atomic replace) and is
proved in VERIFY. There is nothing to fence apart: the replace that adds the new next
hop removes the old one in the same instant.

Only an unplanned failover's switch is a point of no return. A route replace is
reversible, so in a planned failover or a failback a failure after it (the verify finds
packets not taking the path) rolls the route back to where it was; after an unplanned
failover, rolling back would route traffic onto the path that just failed.
"""

from __future__ import annotations

from failback.drivers.planning import Phase, PlanRequest
from failback.model.plan import StepSpec


def _switch(r: PlanRequest) -> list[StepSpec]:
    path = r.settings.sites[r.to_site]
    return [
        StepSpec(
            id=f"route-{r.component}-{r.to_site}",
            title=f"route {r.settings.options.prefix} via {r.to_site}'s next hop {path.gateway}",
            action="route.switch",
            component=r.component,
            site=r.to_site,
            point_of_no_return=r.point_of_no_return and not r.planned,
            why="one atomic replace: no packet finds the prefix without a route",
        )
    ]


def _verify(r: PlanRequest) -> list[StepSpec]:
    return [
        StepSpec(
            id=f"verify-{r.component}-{r.to_site}",
            title=f"verify packets to {r.settings.options.target} take {r.to_site}'s path",
            action="route.verify",
            component=r.component,
            site=r.to_site,
            why="the route table can say one thing and the packets do another",
        )
    ]


def route_steps(request: PlanRequest) -> list[StepSpec]:
    if request.to_site not in request.settings.sites:
        return []
    if request.phase is Phase.PROMOTE:
        return _switch(request)
    if request.phase is Phase.VERIFY:
        return _verify(request)
    return []
