"""Observe, plan and start a run: the one path every interface uses.

The CLI, the HTTP API and the monitor all start runs through here, so that they
cannot differ in what they check before acting (interfaces hold no logic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from failback.config import Topology
from failback.engine.executor import Executor
from failback.errors import UsageError
from failback.hosts import HostSet
from failback.model.observed import ServiceState
from failback.model.plan import Plan
from failback.observe.service import observe_service_once
from failback.plan.artefact import (
    PlanArtefact,
    PlanOptions,
    build_artefact,
    check_request,
    check_same_facts,
    check_same_origin,
    check_same_plan,
    observed_facts,
)
from failback.plan.planners import plan_failback, plan_failover
from failback.store import Journal

RUN_KINDS = ("failover", "failback")


def make_plan(
    kind: str,
    service: str,
    topology: Topology,
    journal: Journal,
    *,
    planned: bool = False,
    force: bool = False,
    accept_data_loss: bool = False,
    approval: bool | None = None,
    stability_window_s: float | None = None,
    hosts: HostSet | None = None,
) -> Plan:
    """Observe the service (read-only), then plan a run of ``kind``; changes nothing.

    ``approval=True`` adds an approval gate whatever the policy; ``False`` and ``None``
    leave it to the policy. No caller (HTTP client, CLI, monitor) can remove a gate
    the service's policy requires: that is the policy's decision, made in the topology.
    """
    options = PlanOptions(
        planned=planned,
        force=force,
        accept_data_loss=accept_data_loss,
        approval=approval,
        stability_window_s=stability_window_s,
    )
    state = observe_service_once(topology, service, journal, hosts)
    return plan_from_state(kind, service, topology, state, options)


def plan_from_state(
    kind: str, service: str, topology: Topology, state: ServiceState, options: PlanOptions
) -> Plan:
    """Plan a run of ``kind`` from an observation already made (pure, changes nothing)."""
    svc = topology.service(service)
    if kind == "failover":
        return plan_failover(
            service,
            svc,
            state,
            planned=options.planned,
            force=options.force,
            accept_data_loss=options.accept_data_loss,
        )
    if kind == "failback":
        return plan_failback(
            service,
            svc,
            state,
            approval=options.approval or None,
            stability_window_s=options.stability_window_s,
        )
    raise UsageError(f"unknown kind of run {kind!r}", hint=" or ".join(RUN_KINDS))


def make_plan_artefact(
    kind: str,
    service: str,
    topology: Topology,
    journal: Journal,
    options: PlanOptions,
    *,
    hosts: HostSet | None = None,
) -> PlanArtefact:
    """Observe once, plan from that observation, and keep both in an artefact for
    ``apply`` (``failback failback --plan FILE``); changes nothing."""
    topology.service(service)  # an unknown service is refused before observing
    state = observe_service_once(topology, service, journal, hosts)
    plan = plan_from_state(kind, service, topology, state, options)
    return build_artefact(plan, options=options, topology=topology, state=state)


def plan_to_apply(
    artefact: PlanArtefact,
    path: Path,
    *,
    kind: str,
    service: str,
    topology: Topology,
    journal: Journal,
    hosts: HostSet | None = None,
) -> Plan:
    """The artefact's plan, once it is known to still hold; else a one-line refusal.

    Checks, in order: the file is a ``kind`` plan for ``service``; the same failback and
    the same topology file; what is observed now (read-only) has the same
    plan-deciding facts; and planning again from that observation with the saved
    options gives the same steps. Changes nothing.
    """
    check_request(artefact, kind=kind, service=service, path=path)
    check_same_origin(artefact, topology=topology, path=path)
    state = observe_service_once(topology, service, journal, hosts)
    check_same_facts(artefact, facts=observed_facts(state), path=path)
    replanned = plan_from_state(kind, service, topology, state, artefact.options)
    check_same_plan(artefact, replanned, path=path)
    return artefact.plan


def create_run(executor: Executor, topology: Topology, plan: Plan, **options: Any) -> int:
    """Record the run (and take the service lock) without executing anything yet."""
    return executor.create(
        topology, plan, {"from_site": plan.from_site, "to_site": plan.to_site, **options}
    )
