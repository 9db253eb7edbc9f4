"""Steps on the routers in front of the database: HAProxy and/or PgBouncer.

A service may have several (an HAProxy TCP endpoint and a PgBouncer pool): every one
of them stops sending writes to the old primary before the promotion, and every one
sends them to the new primary after it. PgBouncer is paused first and resumed last,
so its clients wait through the switch instead of failing.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.base import Role
from failback.drivers.catalog import components_with_role, driver_of
from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec

DB_ROUTER_DRIVERS = ("pgbouncer", "haproxy")


def db_routers(service: Any) -> list[tuple[str, str]]:
    """(component name, driver) of the database routers, PgBouncer first."""
    found = [
        (n, c.driver)
        for n, c in service.components.items()
        if c.driver in DB_ROUTER_DRIVERS and getattr(c.options, "tier", "database") == "database"
    ]
    return sorted(found, key=lambda item: DB_ROUTER_DRIVERS.index(item[1]))


def stateless_tiers(service: Any) -> list[str]:
    """HAProxy components whose traffic is shifted between sites in weighted steps."""
    return [
        n
        for n, c in service.components.items()
        if c.driver == "haproxy" and getattr(c.options, "tier", "database") == "stateless"
    ]


def client_endpoint(service: Any) -> str | None:
    """host:port that clients use for writes: PgBouncer's, else HAProxy's endpoint."""
    for name, driver in db_routers(service):
        options = service.components[name].options
        if driver == "pgbouncer":
            return f"{options.host}:{options.port}"
        endpoint = getattr(options, "endpoint", None)
        if endpoint:
            return str(endpoint)
    return None


def _ask(
    service: Any, roles: tuple[Role, ...], *, reverse: bool = False, **request: Any
) -> list[StepSpec]:
    """Each component playing ``roles`` (in that order, or mirrored) builds its steps."""
    found = components_with_role(service, *roles)
    if reverse:
        found.reverse()
    steps: list[StepSpec] = []
    for index, (name, settings) in enumerate(found):
        steps += driver_of(settings).steps(PlanRequest(
            component=name, settings=settings, first=index == 0,
            last=index == len(found) - 1, **request,
        ))  # fmt: skip
    return steps


def stop_writes_steps(service: Any, site: str, *, undo: str, purpose: str) -> list[StepSpec]:
    """Every pool holds and every router fences ``site``; the first marks when writes stop.

    ``undo``: "route" (a planned switch: send them back on rollback) or "restore" (only
    if they were going there).
    """
    planned = undo == "route"
    return _ask(
        service, (Role.POOL, Role.ROUTER), phase=Phase.STOP_WRITES, kind=RunKind.FAILOVER,
        from_site=site, to_site=site, planned=planned,
    )  # fmt: skip


def route_writes_steps(service: Any, site: str, *, measure: bool, from_site: str) -> list[StepSpec]:
    """Every router sends writes to ``site``; the last one (the pool) ends the
    write-unavailability."""
    return _ask(
        service, (Role.POOL, Role.ROUTER), reverse=True, phase=Phase.ROUTE,
        kind=RunKind.FAILOVER, from_site=from_site, to_site=site, measure=measure,
    )  # fmt: skip


def keep_fenced_steps(service: Any, site: str) -> list[StepSpec]:
    """A returning old primary stays unreachable through every router."""
    return _ask(
        service, (Role.POOL, Role.ROUTER), phase=Phase.KEEP_FENCED, kind=RunKind.FAILBACK,
        from_site=site, to_site=site,
    )  # fmt: skip


def traffic_steps(
    service: Any, *, to_site: str, away: str, percents: list[int], bake_s: float, gated: bool
) -> list[StepSpec]:
    """Shift every stateless tier's traffic to ``to_site`` in steps, each one judged."""
    steps: list[StepSpec] = []
    for percent in percents:
        steps += _ask(
            service, (Role.TIER,), phase=Phase.SHIFT, kind=RunKind.FAILOVER, from_site=away,
            to_site=to_site, percent=percent, bake_s=bake_s, gated=gated,
        )  # fmt: skip
    return steps


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
