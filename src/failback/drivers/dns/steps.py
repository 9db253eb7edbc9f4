"""The steps a DNS name contributes to a plan: in each SHIFT phase, move its share to the
site gaining the role and (when the procedure gates its traffic steps) wait out the TTL.

Address records cannot be weighted, so they take part only in the 100% step: the name
moves at once, after the database switched (a failback's last traffic step), or with
the tiers of a failover. SRV records follow every step of ``policy.traffic_steps``.
"""

from __future__ import annotations

from failback.drivers.dns.records import weighted
from failback.drivers.planning import Phase, PlanRequest
from failback.model.plan import StepSpec


def dns_steps(request: PlanRequest) -> list[StepSpec]:
    if request.phase is not Phase.SHIFT:
        return []
    settings = request.settings
    if not weighted(settings) and request.percent != 100:
        return []
    name, site, percent = request.component, request.to_site, request.percent
    fqdn, ttl = settings.options.fqdn, int(settings.options.ttl)
    title = (
        f"{percent}% of {fqdn} to {site} at {name}"
        if weighted(settings)
        else f"{fqdn} answers {site}'s addresses ({name})"
    )
    steps = [StepSpec(
        id=f"dns-{name}-{site}-{percent}", title=title, action="dns.shift", component=name,
        site=site, params={"percent": percent, "away": request.from_site},
    )]  # fmt: skip
    if request.gated:
        steps.append(StepSpec(
            id=f"gate-{name}-{site}-{percent}",
            title=f"wait out {fqdn}'s TTL ({ttl}s) and bake {request.bake_s:g}s: {site} at "
            f"{percent}%",
            action="dns.gate", component=name, site=site, kind="gate",
            params={"percent": percent, "bake_s": request.bake_s},
            why="resolvers keep the old answer for one TTL: clients have moved only after it",
        ))  # fmt: skip
    return steps
