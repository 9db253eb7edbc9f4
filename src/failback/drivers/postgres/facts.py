"""Adapt the postgres driver's observation to the service-wide ComponentObservation."""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.postgres.errors import PgError, PgStateError
from failback.drivers.postgres.node import node_from_component
from failback.drivers.postgres.node_facts import observe
from failback.hosts import Host
from failback.model.observed import ComponentObservation


def observe_postgres_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """Reachable means healthy here; the role (and stale-primary) is judged by the caller."""
    del service
    try:
        node = node_from_component(component, site, host)
        seen = observe(host, node)
    except PgError as exc:
        return ComponentObservation(
            component=name, site=site, driver="postgres", healthy=False, role="unknown",
            detail=exc.message, observed_at=time.time(),
            data={"misconfigured": isinstance(exc, PgStateError)},
        )  # fmt: skip
    data = seen.to_dict()
    if seen.reachable:
        detail = f"{seen.role} on timeline {seen.timeline}"
        if seen.role == "standby":
            lag = seen.lag_bytes if seen.lag_bytes is not None else "?"
            upstream = f"streaming from {seen.upstream}" if seen.streaming else "NOT streaming"
            detail += f", {upstream}, lag {lag} bytes"
        else:
            detail += f", at {data.get('current_lsn')}"
            if seen.read_only:
                detail += ", READ-ONLY" + (" (fenced itself: cut off)" if seen.self_fenced else "")
    else:
        detail = seen.error or "unreachable"
    return ComponentObservation(
        component=name, site=site, driver="postgres", healthy=seen.reachable,
        role=seen.role, detail=detail, data=data, observed_at=seen.observed_at,
    )  # fmt: skip
