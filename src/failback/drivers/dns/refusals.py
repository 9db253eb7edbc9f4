"""Which observed states make a run unsafe or pointless for a DNS name (``check_plan``).

The name's update comes after the database switched (past the point of no return): a
key the server rejects, or a server that does not answer, would stop such a run half
done. A failback and a planned failover can wait, so they are refused before anything
changes, with the server's reason and the hint. An unplanned failover goes on (the
database must move off a failed site whatever the name does): the plan notes that the
name's update may fail, and the run then stops at it for a person.
"""

from __future__ import annotations

from failback.drivers.dns.facts import PROBLEM_KEY
from failback.drivers.dns.records import weighted
from failback.drivers.planning import PlanCheck, RunKind
from failback.errors import PlanRefused


def dns_check_plan(check: PlanCheck) -> list[str]:
    notes: list[str] = []
    for obs in check.state.components:
        if obs.component != check.component or obs.healthy:
            continue
        hint = str(obs.data.get("hint") or "see the DNS server's log")
        can_wait = check.kind is RunKind.FAILBACK or check.planned
        if can_wait and not check.force:
            what = "its key is refused" if obs.data.get(PROBLEM_KEY) == "key-refused" else ""
            raise PlanRefused(
                f"{check.component} cannot be updated{' (' + what + ')' if what else ''}: "
                f"{obs.detail}",
                hint=f"{hint}; nothing was changed",
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
