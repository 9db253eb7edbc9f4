"""The steps a PgBouncer contributes to a plan: PAUSE, then re-point and RESUME.

The planner pauses the pool first and resumes it last (it mirrors the order of the
phases' components), so its clients' queries wait through the whole switch instead
of failing. A pool keeps no returning site fenced: it only ever points at one
database, the one it was last re-pointed to.
"""

from __future__ import annotations

from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec

UNPLANNED_KILL_AFTER_S = 0.25
"""How long an unplanned failover lets the failed site's transactions finish. Short on
purpose: a server that died on a live machine has already broken its connections (the
PAUSE returns at once); one on a dead or partitioned machine never answers, so waiting
only lengthens the outage; and a commit the failing primary acknowledges now may be
lost with it anyway — an error is the more honest answer to its client."""


def pool_steps(request: PlanRequest) -> list[StepSpec]:
    """The pool's steps in one phase (STOP_WRITES, ROUTE)."""
    name = request.component
    if request.phase is Phase.STOP_WRITES:
        site = request.from_site
        purpose = f"stop writes at {site}" if request.planned else f"fence {site}"
        if request.kind is RunKind.FENCE:
            # the monitor holds a pool that points at a stale primary: never resumed
            # towards it, and left alone if someone re-pointed it meanwhile
            return [StepSpec(
                id=f"pause-{name}-{site}", title=f"hold {name}'s clients off {site} (PAUSE)",
                action="pgbouncer.pause", component=name, site=site,
                params={"undo": False, "only_if_pointing_at": site},
                why="its clients reach a stale primary (promise 1)",
            )]  # fmt: skip
        return [StepSpec(
            id=f"pause-{name}-{site}", title=f"{purpose}: PAUSE {name} (clients wait)",
            action="pgbouncer.pause", component=name, site=site,
            params={"stop_writes": request.first}
            if request.planned
            # a failed site's transactions never finish (a partitioned server does not
            # answer): wait briefly, then drop its connections
            else {"stop_writes": request.first, "kill_after_s": UNPLANNED_KILL_AFTER_S},
            why="clients' queries are held, not failed, while the primary changes",
        )]  # fmt: skip
    if request.phase is Phase.ROUTE:
        site = request.to_site
        return [StepSpec(
            id=f"route-{name}-{site}", title=f"point {name} at {site} and RESUME",
            action="pgbouncer.route", component=name, site=site,
            params={"measure_unavailability": request.measure and request.last,
                    "from": request.from_site,
                    # the dead server refused the pool's connection attempts: lift
                    # PgBouncer's login backoff for the RESUME (PoolRoute)
                    **({} if request.planned else {"lift_login_backoff": True})},
        )]  # fmt: skip
    return []
