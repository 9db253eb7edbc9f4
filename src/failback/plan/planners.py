"""Entry points: plan a failover or a failback of one service from its observed state.

Pure: they read the topology and a ServiceState and return a Plan (or refuse with
a reason); nothing is changed. The CLI prints the plan (``failback plan``) or hands
it to the engine.
"""

from __future__ import annotations

from typing import Any

from failback.errors import FailbackError
from failback.model.observed import ServiceState
from failback.model.plan import Plan, StepSpec
from failback.plan.command_plans import command_switch_steps, command_sync_steps
from failback.plan.common import (
    approval_gate,
    approval_needed,
    checks_gate,
    record_step,
    stability_gate,
)
from failback.plan.errors import PlanRefused


def other_site(service: Any, site: str) -> str:
    """The site a run moves the service to, away from ``site``."""
    try:
        return str(service.other_site(site))
    except FailbackError as exc:
        raise PlanRefused(exc.message, hint=exc.hint) from exc


def _has_driver(service: Any, driver: str) -> bool:
    return any(c.driver == driver for c in service.components.values())


def plan_failover(
    service_name: str,
    service: Any,
    state: ServiceState,
    *,
    planned: bool = False,
    force: bool = False,
    accept_data_loss: bool = False,
) -> Plan:
    """Move the service away from its active site (unplanned, or planned with --planned)."""
    from_site = state.active_site
    to_site = other_site(service, from_site)
    if _has_driver(service, "postgres"):
        from failback.plan.postgres_plans import postgres_failover_plan

        return postgres_failover_plan(
            service_name,
            service,
            state,
            from_site=from_site,
            to_site=to_site,
            planned=planned,
            force=force,
            accept_data_loss=accept_data_loss,
        )
    active_healthy = state.site_healthy(from_site)
    if active_healthy and not planned and not force:
        raise PlanRefused(
            f"{service_name} is healthy at its active site {from_site}; an unplanned failover"
            " is for a failed site",
            hint="use --planned to move it for maintenance, or --force if you know better",
        )
    steps = [
        *command_switch_steps(service, from_site=from_site, to_site=to_site),
        record_step(to_site, needs_resync=[from_site]),
    ]
    notes = [] if not active_healthy else [f"{from_site} was healthy: failover was requested"]
    return Plan(
        service=service_name,
        kind="failover",
        from_site=from_site,
        to_site=to_site,
        steps=steps,
        notes=notes,
    )


def plan_failback(
    service_name: str,
    service: Any,
    state: ServiceState,
    *,
    approval: bool | None = None,
    stability_window_s: float | None = None,
) -> Plan:
    """Bring the service home to its primary site, gates first."""
    home = service.primary_site
    away = state.active_site
    if away == home:
        raise PlanRefused(
            f"{service_name} already runs at its primary site {home}",
            hint="nothing to fail back; `failback status` shows where each part is",
        )
    if _has_driver(service, "postgres"):
        from failback.plan.postgres_plans import postgres_failback_plan

        return postgres_failback_plan(
            service_name,
            service,
            state,
            home=home,
            away=away,
            approval=approval,
            stability_window_s=stability_window_s,
        )
    policy = service.policy
    window = policy.stability_window if stability_window_s is None else stability_window_s
    steps: list[StepSpec] = [
        checks_gate("precheck", home),
        stability_gate(home, window),
        *command_sync_steps(service, site=home),
    ]
    if approval_needed(policy.approval, approval):
        steps.append(approval_gate(home, f"switch the service back to {home}?"))
    steps.extend(command_switch_steps(service, from_site=away, to_site=home))
    steps.append(checks_gate("postcheck", home))
    steps.append(record_step(home, needs_resync=[]))
    return Plan(service=service_name, kind="failback", from_site=away, to_site=home, steps=steps)
