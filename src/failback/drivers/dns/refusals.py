"""Which observed states make a run unsafe or pointless for a DNS name (``check_plan``).

A key the server rejects is a configuration mistake that no retry fixes: every run is
refused while it lasts (with ``--force`` a failover still runs; its DNS step will then
fail and say so). An unreachable server refuses a failback and a planned failover, which
can wait for it; an unplanned failover goes on, since the database must move anyway.
"""

from __future__ import annotations

from failback.drivers.dns.facts import PROBLEM_KEY
from failback.drivers.dns.records import weighted
from failback.drivers.planning import PlanCheck, RunKind
from failback.errors import PlanRefused

_CONFIG_PROBLEMS = ("key-refused", "key-unusable")


def dns_check_plan(check: PlanCheck) -> list[str]:
    notes: list[str] = []
    for obs in check.state.components:
        if obs.component != check.component or obs.healthy:
            continue
        problem = obs.data.get(PROBLEM_KEY)
        hint = str(obs.data.get("hint") or "")
        if problem in _CONFIG_PROBLEMS and not check.force:
            raise PlanRefused(f"{check.component}: {obs.detail}", hint=hint or None)
        wait_for_it = check.kind is RunKind.FAILBACK or check.planned
        if wait_for_it and not check.force:
            raise PlanRefused(
                f"{check.component} cannot be updated: {obs.detail}",
                hint=f"{hint}; a {check.kind.value} moves the name: fix it first".lstrip("; "),
            )
        notes.append(f"{check.component}: {obs.detail}; its update may fail")
        break
    if check.kind is RunKind.FAILBACK and not weighted(check.settings):
        steps = [p for p in check.service.policy.traffic_steps if p < 100]
        if steps:
            notes.append(
                f"{check.component}: {check.settings.options.type} records cannot be weighted:"
                f" {check.settings.options.fqdn} moves to {check.to_site} at once, at the 100%"
                " step (SRV records follow every traffic step)"
            )
    return notes
