"""Observe, plan and start a run: the one path every interface uses.

The CLI, the HTTP API and the monitor all start runs through here, so that they
cannot differ in what they check before acting (interfaces hold no logic).
"""

from __future__ import annotations

from typing import Any

from failback.engine.executor import Executor
from failback.engine.journal import Journal
from failback.errors import UsageError
from failback.hosts import Host, LocalHost
from failback.model.plan import Plan

RUN_KINDS = ("failover", "failback")


def make_plan(
    kind: str,
    service: str,
    topology: Any,
    journal: Journal,
    *,
    planned: bool = False,
    force: bool = False,
    accept_data_loss: bool = False,
    approval: bool | None = None,
    stability_window_s: float | None = None,
    host: Host | None = None,
) -> Plan:
    """Observe the service (read-only), then plan a run of ``kind``; changes nothing.

    ``approval=True`` adds an approval gate whatever the policy; ``False`` and ``None``
    leave it to the policy. No caller (HTTP client, CLI, monitor) can remove a gate
    the service's policy requires: that is the policy's decision, made in the topology.
    """
    from failback.observe.service import observe_service
    from failback.plan.planners import plan_failback, plan_failover

    svc = topology.service(service)
    state = observe_service(host or LocalHost(), topology, service, journal)
    if kind == "failover":
        return plan_failover(
            service, svc, state, planned=planned, force=force, accept_data_loss=accept_data_loss
        )
    if kind == "failback":
        return plan_failback(
            service, svc, state, approval=approval or None, stability_window_s=stability_window_s
        )
    raise UsageError(f"unknown kind of run {kind!r}", hint=" or ".join(RUN_KINDS))


def create_run(executor: Executor, topology: Any, plan: Plan, **options: Any) -> int:
    """Record the run (and take the service lock) without executing anything yet."""
    return executor.create(
        topology, plan, {"from_site": plan.from_site, "to_site": plan.to_site, **options}
    )
