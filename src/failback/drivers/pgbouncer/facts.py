"""Observation of a PgBouncer component at one site: does the pool point there?"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.pgbouncer.admin import PgbouncerError
from failback.drivers.pgbouncer.target import pgbouncer_of
from failback.errors import FailbackError
from failback.hosts import Host
from failback.model.observed import ComponentObservation


def observe_pgbouncer_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """``active`` when every pooled database points at this site and is not paused."""
    del host, service
    where = component.sites[site]
    try:
        targets = pgbouncer_of(component).targets()
    except (PgbouncerError, FailbackError) as exc:
        return ComponentObservation(
            component=name, site=site, driver="pgbouncer", healthy=False, role="down",
            detail=exc.message, observed_at=time.time(),
        )  # fmt: skip
    mine = [targets.get(n) for n in component.options.databases]
    here = all(t is not None and t.host == where.host and t.port == where.port for t in mine)
    paused = any(t is not None and t.paused for t in mine)
    role = "active" if here and not paused else "standby"
    detail = ", ".join(
        f"{t.name} -> {t.host}:{t.port}{' (paused)' if t.paused else ''}" for t in mine if t
    )
    return ComponentObservation(
        component=name, site=site, driver="pgbouncer", healthy=True, role=role,
        detail=detail or "databases not defined", observed_at=time.time(),
        data={"targets": {t.name: f"{t.host}:{t.port}" for t in mine if t}, "paused": paused},
    )  # fmt: skip
