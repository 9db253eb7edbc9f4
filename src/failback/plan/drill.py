"""Plan a disaster-recovery drill of one service's standby (``failback drill``).

Pure: from the topology and an observation, the steps of a drill, or a refusal with
its reason. A drill copies the standby at a site that is *not* the active one; it is
refused for the active site (that is production), for a site that needs a resync
(its data is not production's) and for a standby that is not healthy.

The planner also decides which of the service's declared checks can be aimed at the
copy. Only an ``sql`` check of the drilled database can: it is run against the copy
instead of the site. Every other check would reach production — a ``tcp`` or ``http``
check names an address production answers at (the copy listens on no TCP port), and a
``command`` does whatever it does — so it is skipped, with that reason in the report.
A drill that ran a check against production and reported it as the copy's would
prove the opposite of what it says.
"""

from __future__ import annotations

from typing import Any

from failback.config import Service
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import components_with_role, driver_of, has_capability
from failback.drivers.drilling import DrillCheck, DrillRequest, SkippedCheck
from failback.errors import PlanRefused, UsageError
from failback.model.locks import DRILL_KIND
from failback.model.observed import ServiceState
from failback.model.plan import Plan


def drill_site(service_name: str, service: Service, state: ServiceState, site: str | None) -> str:
    """The site to drill: ``site``, or the one that is not active (its standby)."""
    active = state.active_site
    if site is None:
        return str(service.other_site(active))
    if site not in service.sites:
        raise UsageError(
            f"{service_name} has no site {site!r}",
            hint=f"its sites are {', '.join(service.sites)}",
        )
    if site == active:
        raise PlanRefused(
            f"{site} is the active site of {service_name}: a drill copies the standby, "
            "never production",
            hint=f"drill the other site: failback drill {service_name} --site "
            f"{service.other_site(active)}",
        )
    return site


def aimed_checks(
    service: Service, database: str, site: str
) -> tuple[tuple[DrillCheck, ...], tuple[SkippedCheck, ...]]:
    """The declared checks run against the copy, and those skipped with their reason."""
    aimed: list[DrillCheck] = []
    skipped: list[SkippedCheck] = []
    for check in service.checks:
        reason = _why_not(check, database, site)
        if reason is None:
            aimed.append(DrillCheck(check.name, check.query, float(check.timeout)))
        else:
            skipped.append(SkippedCheck(check.name, check.type, reason))
    return tuple(aimed), tuple(skipped)


def _why_not(check: Any, database: str, site: str) -> str | None:
    if check.site is not None and check.site != site:
        return f"it speaks for {check.site}, not for the drilled site {site}"
    if check.type == "sql":
        if check.component != database:
            return f"it queries {check.component}, not the drilled database {database}"
        return None
    if check.type == "tcp":
        return (
            f"{check.host}:{check.port} is an address production answers at; the copy "
            "listens on no TCP port"
        )
    if check.type == "http":
        return "an http check reaches the application, which talks to production, not the copy"
    return "a command cannot be aimed at the copy: failback cannot tell what it touches"


def plan_drill(
    service_name: str,
    service: Service,
    state: ServiceState,
    *,
    site: str | None = None,
    keep_for_s: float = 0.0,
    parent: str | None = None,
) -> Plan:
    """The drill of ``site``'s standby (default: the site that is not active)."""
    target = drill_site(service_name, service, state, site)
    if target in state.needs_resync:
        raise PlanRefused(
            f"{target} needs a resync: its data is not production's, a drill of it proves nothing",
            hint=f"fail back (or resync) first; `failback status {service_name}`",
        )
    databases = [
        (name, settings)
        for name, settings in components_with_role(service, Role.DATABASE)
        if has_capability(settings, Capability.DRILL) and target in settings.sites
    ]
    if not databases:
        raise PlanRefused(
            f"{service_name} has no database at {target} whose driver can be drilled",
            hint="a drill copies a database standby (the postgres driver can)",
        )
    steps = []
    notes = []
    for name, settings in databases:
        seen = state.get(name, target)
        if seen is None or not seen.healthy or seen.role != "standby":
            role = "not observed" if seen is None else f"{seen.role}: {seen.detail}"
            raise PlanRefused(
                f"{name} at {target} is not a healthy standby ({role})",
                hint="a drill copies a healthy standby; `failback status` shows why it is not",
            )
        checks, skipped = aimed_checks(service, name, target)
        notes += [f"check {s.name} skipped: {s.reason}" for s in skipped]
        request = DrillRequest(
            component=name,
            settings=settings,
            site=target,
            active_site=state.active_site,
            keep_for_s=keep_for_s,
            checks=checks,
            skipped=skipped,
            parent=parent,
        )
        steps += driver_of(settings).drill_steps(request)
    return Plan(
        service=service_name,
        kind=DRILL_KIND,
        from_site=state.active_site,
        to_site=target,
        steps=steps,
        notes=notes,
    )
