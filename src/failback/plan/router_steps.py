"""Steps on the routers in front of the database: HAProxy and/or PgBouncer.

A service may have several (an HAProxy TCP endpoint and a PgBouncer pool): every one
of them stops sending writes to the old primary before the promotion, and every one
sends them to the new primary after it. PgBouncer is paused first and resumed last,
so its clients wait through the switch instead of failing.
"""

from __future__ import annotations

from typing import Any

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


def stop_writes_steps(service: Any, site: str, *, undo: str, purpose: str) -> list[StepSpec]:
    """Every router stops sending clients to ``site``; the first one marks when writes stop.

    ``undo``: "route" (send them back on rollback), "restore" (only if they were going
    there), or "" (no undo).
    """
    steps = []
    for index, (name, driver) in enumerate(db_routers(service)):
        first = index == 0
        if driver == "pgbouncer":
            steps.append(StepSpec(
                id=f"pause-{name}-{site}", title=f"{purpose}: PAUSE {name} (clients wait)",
                action="pgbouncer.pause", component=name, site=site,
                params={"stop_writes": first},
                why="clients' queries are held, not failed, while the primary changes",
            ))  # fmt: skip
        else:
            params: dict[str, Any] = {"stop_writes": first}
            if undo:
                params["undo"] = undo
            steps.append(StepSpec(
                id=f"fence-{name}-{site}", title=f"{purpose}: fence {site} at {name}",
                action="haproxy.fence", component=name, site=site, params=params,
                why="promise 1: no client may reach the old primary once the switch starts",
            ))  # fmt: skip
    return steps


def route_writes_steps(service: Any, site: str, *, measure: bool, from_site: str) -> list[StepSpec]:
    """Every router sends writes to ``site``; the last one ends the write-unavailability."""
    routers = list(reversed(db_routers(service)))
    steps = []
    for index, (name, driver) in enumerate(routers):
        last = index == len(routers) - 1
        action = "pgbouncer.route" if driver == "pgbouncer" else "haproxy.route"
        title = (
            f"point {name} at {site} and RESUME" if driver == "pgbouncer"
            else f"route writes to {site} at {name}"
        )  # fmt: skip
        steps.append(StepSpec(
            id=f"route-{name}-{site}", title=title, action=action, component=name, site=site,
            params={"measure_unavailability": measure and last, "from": from_site},
        ))  # fmt: skip
    return steps


def keep_fenced_steps(service: Any, site: str) -> list[StepSpec]:
    """A returning old primary stays unreachable through every HAProxy router."""
    return [
        StepSpec(
            id=f"fence-{name}-{site}",
            title=f"keep {site} fenced at {name} until resynced",
            action="haproxy.fence",
            component=name,
            site=site,
            why="a returning old primary is fenced until it has been resynced (promise 1)",
        )
        for name, driver in db_routers(service)
        if driver == "haproxy"
    ]


def traffic_steps(
    service: Any, *, to_site: str, away: str, percents: list[int], bake_s: float, gated: bool
) -> list[StepSpec]:
    """Shift every stateless tier's traffic to ``to_site`` in steps, each one judged."""
    steps: list[StepSpec] = []
    for percent in percents:
        for tier in stateless_tiers(service):
            steps.append(StepSpec(
                id=f"traffic-{tier}-{to_site}-{percent}",
                title=f"{percent}% of {tier} traffic to {to_site}",
                action="haproxy.traffic", component=tier, site=to_site,
                params={"percent": percent, "away": away},
            ))  # fmt: skip
            if gated:
                steps.append(StepSpec(
                    id=f"gate-{tier}-{to_site}-{percent}",
                    title=f"{tier} healthy at {to_site} with {percent}% for {bake_s:g}s",
                    action="gate.traffic", component=tier, site=to_site, kind="gate",
                    params={"percent": percent, "bake_s": bake_s},
                    why="a failed gate sends all traffic back to the secondary site at once",
                ))  # fmt: skip
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
