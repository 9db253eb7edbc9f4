"""The steps an HAProxy backend contributes to a plan.

As the write router of a database it fences the site losing the role before the
promotion (promise 1: no client may reach the old primary once the switch starts),
re-points writes after it, and keeps a returning old primary fenced until it has been
resynced. As a stateless tier it shifts traffic between the sites by weight, each
step judged by a gate. The planner decides when; this module decides what.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec


def router_steps(request: PlanRequest) -> list[StepSpec]:
    """The write router's steps in one phase (KEEP_FENCED, STOP_WRITES, ROUTE)."""
    name = request.component
    if request.phase is Phase.KEEP_FENCED:
        site = request.to_site
        return [StepSpec(
            id=f"fence-{name}-{site}", title=f"keep {site} fenced at {name} until resynced",
            action="haproxy.fence", component=name, site=site,
            why="a returning old primary is fenced until it has been resynced (promise 1)",
        )]  # fmt: skip
    if request.phase is Phase.STOP_WRITES:
        site = request.from_site
        # a planned switch sends writes back on rollback; after a failure, only if they
        # were going there when the run fenced the site
        undo = "route" if request.planned else "restore"
        purpose = f"stop writes at {site}" if request.planned else f"fence {site}"
        params: dict[str, Any] = {"stop_writes": request.first, "undo": undo}
        if request.kind is RunKind.FENCE:
            del params["undo"]  # routing back would send clients to a stale primary
        return [StepSpec(
            id=f"fence-{name}-{site}", title=f"{purpose}: fence {site} at {name}",
            action="haproxy.fence", component=name, site=site, params=params,
            why="promise 1: no client may reach the old primary once the switch starts",
        )]  # fmt: skip
    if request.phase is Phase.ROUTE:
        site = request.to_site
        return [StepSpec(
            id=f"route-{name}-{site}", title=f"route writes to {site} at {name}",
            action="haproxy.route", component=name, site=site,
            params={"measure_unavailability": request.measure and request.last,
                    "from": request.from_site},
        )]  # fmt: skip
    return []


def tier_steps(request: PlanRequest) -> list[StepSpec]:
    """A stateless tier's steps: in SHIFT, ``percent`` of its traffic to ``to_site``,
    then (``gated``) a gate that judges the tier at that share for ``bake_s``."""
    if request.phase is not Phase.SHIFT:
        return []
    tier, site, percent = request.component, request.to_site, request.percent
    steps = [StepSpec(
        id=f"traffic-{tier}-{site}-{percent}", title=f"{percent}% of {tier} traffic to {site}",
        action="haproxy.traffic", component=tier, site=site,
        params={"percent": percent, "away": request.from_site},
    )]  # fmt: skip
    if request.gated:
        steps.append(StepSpec(
            id=f"gate-{tier}-{site}-{percent}",
            title=f"{tier} healthy at {site} with {percent}% for {request.bake_s:g}s",
            action="gate.traffic", component=tier, site=site, kind="gate",
            params={"percent": percent, "bake_s": request.bake_s},
            why="a failed gate sends all traffic back to the secondary site at once",
        ))  # fmt: skip
    return steps
