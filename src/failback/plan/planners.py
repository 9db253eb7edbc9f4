"""Entry points: plan a failover or a failback of one service from its observed state.

Pure: they read the topology and a ServiceState and return a Plan (or refuse with
a reason); nothing is changed. The CLI prints the plan (``failback plan``) or hands
it to the engine.

The order of a plan is the procedure's (``failback.plan.phases``); what each component
does in a phase, and which observed states make a run unsafe for it, are its driver's
(``Driver.steps``, ``Driver.check_plan``). Gates (checks, stability, approval,
observation) and the final record are the planner's own.
"""

from __future__ import annotations

from failback.config import Service
from failback.drivers.base import Role
from failback.drivers.catalog import components_with_role, driver_of
from failback.drivers.planning import Phase, PlanCheck, RunKind
from failback.errors import FailbackError, PlanRefused
from failback.model.observed import ServiceState
from failback.model.plan import Plan, StepSpec
from failback.plan.common import (
    approval_gate,
    approval_needed,
    checks_gate,
    clean_room_gate,
    incident_clear_step,
    observation_gate,
    record_step,
    stability_gate,
)
from failback.plan.phases import (
    DATABASE,
    OPERATOR,
    SWITCHOVER,
    WRITE_PATH,
    Procedure,
    Stage,
    expand,
    shift,
    unplanned_switch,
)


def other_site(service: Service, site: str) -> str:
    """The site a run moves the service to, away from ``site``."""
    try:
        return str(service.other_site(site))
    except FailbackError as exc:
        raise PlanRefused(exc.message, hint=exc.hint) from exc


def _check_components(
    service: Service,
    state: ServiceState,
    kind: RunKind,
    from_site: str,
    to_site: str,
    **flags: bool,
) -> list[str]:
    """Each component's driver judges the run (refuses, or adds notes), in file order."""
    notes: list[str] = []
    for name, settings in service.components.items():
        notes += driver_of(settings).check_plan(
            PlanCheck(
                kind=kind, component=name, settings=settings, service=service, state=state,
                from_site=from_site, to_site=to_site, **flags,
            )
        )  # fmt: skip
    return notes


def _refuse_unreachable_write_path(service: Service, state: ServiceState, *, what: str) -> None:
    """A switch needs every router and pool it must fence and re-point: refuse while one
    is down."""
    for name, _settings in components_with_role(service, *WRITE_PATH):
        for obs in state.components:
            if obs.component == name and not obs.healthy:
                raise PlanRefused(
                    f"{name} cannot be driven: {obs.detail}",
                    hint=f"a {what} must fence and re-point every router; fix {name} first",
                )


def _site_failed(
    service_name: str, state: ServiceState, from_site: str, *, asked: bool
) -> list[str]:
    """Without a database, nothing can tell whether the active site lost writes: a site
    whose every component is healthy has not failed, unless the person ``asked`` for the
    move (--planned, --force)."""
    healthy = state.site_healthy(from_site)
    if healthy and not asked:
        raise PlanRefused(
            f"{service_name} is healthy at its active site {from_site}; an unplanned failover"
            " is for a failed site",
            hint="use --planned to move it for maintenance, or --force if you know better",
        )
    return [f"{from_site} was healthy: failover was requested"] if healthy else []


def plan_failover(
    service_name: str,
    service: Service,
    state: ServiceState,
    *,
    planned: bool = False,
    force: bool = False,
    accept_data_loss: bool = False,
) -> Plan:
    """Move the service away from its active site (unplanned, or planned with --planned)."""
    from_site = state.active_site
    to_site = other_site(service, from_site)
    notes = _check_components(
        service, state, RunKind.FAILOVER, from_site, to_site, planned=planned, force=force,
        accept_data_loss=accept_data_loss,
    )  # fmt: skip
    if planned or not force:
        _refuse_unreachable_write_path(service, state, what="failover")
    if not components_with_role(service, Role.DATABASE):
        notes += _site_failed(service_name, state, from_site, asked=planned or force)
    procedure: Procedure
    if planned:
        procedure = (
            Stage(Phase.PREFLIGHT, DATABASE),
            Stage(Phase.CATCHUP, DATABASE),
            *SWITCHOVER,
            *shift([100]),
        )
    else:
        procedure = (
            Stage(Phase.PREFLIGHT, DATABASE),
            *unplanned_switch(measure_unavailability=False, measure_rto=True),
        )
    expansion = expand(
        service, procedure, kind=RunKind.FAILOVER, from_site=from_site, to_site=to_site,
        planned=planned,
    )  # fmt: skip
    # the site left behind needs a resync, unless the plan made it follow the new one
    reprotected = Phase.REPROTECT in expansion.produced
    steps = [*expansion.steps, record_step(to_site, [] if reprotected else [from_site])]
    return Plan(
        service=service_name,
        kind="failover",
        from_site=from_site,
        to_site=to_site,
        steps=steps,
        notes=notes,
    )


def split_traffic_plan(percents: list[int], database_after: str) -> tuple[list[int], list[int]]:
    """Which traffic steps come before the database switch, and which after it.

    The tier moves first so that a primary site that cannot serve is found before the
    database moves; the final step (100%) follows the database.
    """
    before = [p for p in percents if p < 100]
    if database_after == "first_step":
        before = before[:1]
    after = [p for p in percents if p not in before] or [100]
    if after[-1] != 100:
        after.append(100)
    return before, after


def _clean_room(service_name: str, home: str, state: ServiceState) -> Procedure:
    """The clean_room gate of a service marked after an incident, right after the write
    path keeps the returning site fenced: before any check, capture or resync touches it.
    Refused without a baseline of ``home``: the gate would have nothing to compare."""
    if state.after_incident is None:
        return ()
    if state.baseline_recorded_at is None:
        raise PlanRefused(
            f"{service_name} is marked after_incident and {home} has no usable baseline: "
            "the clean_room gate has nothing to compare it with",
            hint=f"`failback baseline show {home}` says why; record one only where {home} is "
            f"known clean (`failback baseline record {home}`), or clear the mark "
            f"(`failback incident clear {service_name}`)",
        )
    return (clean_room_gate(home, state.after_incident),)


def plan_failback(
    service_name: str,
    service: Service,
    state: ServiceState,
    *,
    approval: bool | None = None,
    stability_window_s: float | None = None,
) -> Plan:
    """Bring the service home to its primary site, gates first.

    The returning site stays fenced, is resynced and catches up while the service still
    runs where it is; only then (after approval, where required) does the zero-loss
    switchover move it home, between the stateless tiers' traffic steps.
    """
    home = service.primary_site
    away = state.active_site
    if away == home:
        raise PlanRefused(
            f"{service_name} already runs at its primary site {home}",
            hint="nothing to fail back; `failback status` shows where each part is",
        )
    notes = _check_components(service, state, RunKind.FAILBACK, away, home)
    _refuse_unreachable_write_path(service, state, what="failback")
    databases = components_with_role(service, Role.DATABASE)
    policy = service.policy
    window = policy.stability_window if stability_window_s is None else stability_window_s
    gates: Procedure = ()
    if approval_needed(policy.approval, approval):
        question = (
            f"{home} is resynced and caught up: switch writes back to it?"
            if databases
            else f"switch the service back to {home}?"
        )
        gates = (approval_gate(home, question),)
    before, after = split_traffic_plan(
        list(policy.traffic_steps), policy.traffic_gate.database_after
    )
    bake = float(policy.bake_time)
    clean_room = _clean_room(service_name, home, state)
    procedure: Procedure = (
        Stage(Phase.KEEP_FENCED, WRITE_PATH),
        *clean_room,
        checks_gate("precheck", home),
        Stage(Phase.PREFLIGHT, DATABASE),
        stability_gate(home, window),
        Stage(Phase.CAPTURE, DATABASE),
        Stage(Phase.RESYNC, (*DATABASE, *OPERATOR)),
        Stage(Phase.CATCHUP, DATABASE),
        *gates,
        *shift(before, bake_s=bake, gated=True),
        *SWITCHOVER,
        *shift(after, bake_s=bake, gated=True),
        checks_gate("postcheck", home),
        record_step(home, []),
    )
    steps: list[StepSpec] = expand(
        service, procedure, kind=RunKind.FAILBACK, from_site=away, to_site=home, planned=True
    ).steps
    if databases and policy.observation_window > 0:
        window_s = float(policy.observation_window)
        steps.append(observation_gate(home, away, databases[0][0], window_s))
    if state.after_incident is not None:
        steps.append(incident_clear_step(state.after_incident))
    return Plan(
        service=service_name, kind="failback", from_site=away, to_site=home, steps=steps,
        notes=notes,
    )  # fmt: skip
