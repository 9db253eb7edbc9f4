"""The procedures as sequences of phases, and how a sequence becomes steps.

A procedure is written down once, as data: the order of the phases (fence -> stop ->
replay -> promote -> route -> re-protect, docs/concepts.md) and, for each phase, the
roles that take part in it, in the order they act. Within a phase the components are
taken in that role order and each component's driver builds its own steps
(``Driver.steps``); the planner never names a driver.

Why role order matters: when writes stop, the pool is paused before the routers fence
the old site (its clients wait instead of failing), and when writes resume the order is
mirrored, so the pool resumes last, once every router points at the new primary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from failback.config import Service
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import components_with_role, driver_of, has_capability
from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec

WRITE_PATH = (Role.POOL, Role.ROUTER)
"""The components clients' writes go through, pool first (it holds them, then the
routers fence)."""


@dataclass(frozen=True)
class Stage:
    """One phase of a procedure, and the roles that take part in it, in order."""

    phase: Phase
    roles: tuple[Role, ...]
    mirrored: bool = False
    """Take the components in the reverse of ``roles`` order (ROUTE mirrors STOP_WRITES)."""
    measure: bool = False
    """The procedure measures this phase (``PlanRequest.measure``)."""
    percent: int = 100
    """SHIFT: the share of the tiers' traffic sent to the site gaining the role."""
    bake_s: float = 0.0
    gated: bool = False


Procedure = tuple[Stage | StepSpec, ...]
"""Stages, and the planner's own steps (gates, record) where they belong."""

DATABASE = (Role.DATABASE,)
OPERATOR = (Role.OPERATOR,)

OPERATOR_SWITCH: Procedure = tuple(
    Stage(phase, OPERATOR)
    for phase in (Phase.FENCE, Phase.PROMOTE, Phase.UNFENCE, Phase.DEMOTE, Phase.VERIFY)
)
"""The operator's commands: fence the old site, promote the new one, open it to traffic,
demote the old one, verify."""

SWITCHOVER: Procedure = (
    Stage(Phase.CHECKPOINT, DATABASE),
    Stage(Phase.STOP_WRITES, WRITE_PATH),
    Stage(Phase.STOP, DATABASE),
    Stage(Phase.REPLAY, DATABASE),
    Stage(Phase.PROMOTE, DATABASE),
    Stage(Phase.ROUTE, WRITE_PATH, mirrored=True, measure=True),
    *OPERATOR_SWITCH,
    Stage(Phase.REPROTECT, DATABASE),
    Stage(Phase.VERIFY, DATABASE),
)
"""Zero-loss switchover: the core of a planned failover, of a failback and of the switch
back from a live new primary. Writes stop, the old primary stops cleanly, its exact
final position is replayed, then the other site is promoted and writes resume."""


def shift(percents: list[int], *, bake_s: float = 0.0, gated: bool = False) -> Procedure:
    """The stateless tiers' traffic to the site gaining the role, step by step."""
    return tuple(
        Stage(Phase.SHIFT, (Role.TIER,), percent=p, bake_s=bake_s, gated=gated) for p in percents
    )


def unplanned_switch(*, measure_unavailability: bool, measure_rto: bool) -> Procedure:
    """The old site failed (or is treated as failed): fence it where clients enter, run
    the operator's site fence (an IPMI or cloud call: the one fence that works on a
    machine that does not answer), stop its database if its machine answers, and only
    then promote the other site, route, move the tiers at once, run the rest of the
    operator's commands, verify a write."""
    return (
        Stage(Phase.STOP_WRITES, WRITE_PATH),
        Stage(Phase.FENCE, (Role.OPERATOR, Role.DATABASE)),
        Stage(Phase.PROMOTE, DATABASE),
        Stage(Phase.ROUTE, WRITE_PATH, mirrored=True, measure=measure_unavailability),
        *shift([100]),
        *(stage for stage in OPERATOR_SWITCH if stage.phase is not Phase.FENCE),
        Stage(Phase.VERIFY, DATABASE, measure=measure_rto),
    )


def client_endpoint(service: Service) -> str | None:
    """host:port clients write through: the first of the write path that knows one."""
    for _name, settings in components_with_role(service, *WRITE_PATH):
        if has_capability(settings, Capability.CLIENT_ENDPOINT):
            endpoint = driver_of(settings).client_endpoint(settings)
            if endpoint:
                return endpoint
    return None


@dataclass
class Expansion:
    """A procedure turned into steps, and which phases produced any."""

    steps: list[StepSpec]
    produced: set[Phase]


def expand(
    service: Service,
    procedure: Procedure,
    *,
    kind: RunKind,
    from_site: str,
    to_site: str,
    planned: bool,
    point_of_no_return: bool = True,
) -> Expansion:
    """Ask each component's driver for its steps, stage by stage, in role order.

    ``point_of_no_return``: the first PROMOTE stage that produces steps is the plan's
    point of no return (the database's promotion, or the operator's when there is no
    database); False when the procedure has none.
    """
    endpoint = client_endpoint(service)
    result = Expansion(steps=[], produced=set())
    for item in procedure:
        if isinstance(item, StepSpec):
            result.steps.append(item)
            continue
        found = components_with_role(service, *item.roles)
        if item.mirrored:
            found.reverse()
        final = point_of_no_return and item.phase is Phase.PROMOTE

        base = PlanRequest(
            phase=item.phase, kind=kind, component="", settings=None, from_site=from_site,
            to_site=to_site, planned=planned, measure=item.measure, point_of_no_return=final,
            endpoint=endpoint, percent=item.percent, bake_s=item.bake_s, gated=item.gated,
        )  # fmt: skip
        # first/last go to the first and last components that take part in the phase
        # (one that gives no step must not leave the phase without the step that marks
        # when writes stop, or the one that measures when they resume)
        taking = [
            (name, settings)
            for name, settings in found
            if driver_of(settings).steps(replace(base, component=name, settings=settings))
        ]
        produced: list[StepSpec] = []
        for index, (name, settings) in enumerate(taking):
            flags = {"first": index == 0, "last": index == len(taking) - 1}
            asked = replace(base, component=name, settings=settings, **flags)
            produced += driver_of(settings).steps(asked)
        if produced:
            result.produced.add(item.phase)
            if final:
                point_of_no_return = False
        result.steps += produced
    return result
