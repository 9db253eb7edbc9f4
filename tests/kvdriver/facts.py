"""What ``observe`` reports about one site of a kv store: read-only, never raises.

The observed role uses failback's vocabulary for a database (``primary``,
``standby``, ``down``), so that the status, the planner's refusals and the stale-
primary marking read a kv store like any other database; the store's own words stay
in ``data``.
"""

from __future__ import annotations

import time
from typing import Any

from failback.hosts import Host
from failback.model.observed import ComponentObservation
from tests.kvdriver.store import PRIMARY, REPLICA, KvStore

OBSERVED_ROLE = {PRIMARY: "primary", REPLICA: "standby"}
"""The store's role -> the role failback shows for a database; anything else is down."""


def observe_kv(host: Host, name: str, settings: Any, site: str) -> ComponentObservation:
    """The site's role, fence, position and source, as its files say now."""
    path = settings.sites[site].path
    try:
        facts = KvStore(host, path).read()
    except (OSError, ValueError) as exc:  # unreadable or corrupt files: down, not a crash
        return _seen(name, site, healthy=False, role="unknown", detail=f"{path}: {exc}")
    if not facts.exists:
        return _seen(name, site, healthy=False, role="down", detail=f"no store at {path}")
    role = OBSERVED_ROLE.get(facts.role or "", "down")
    data = {
        "path": path,
        "store_role": facts.role,
        "position": facts.position,
        "fenced": facts.fenced,
        "follows": facts.follows,
        "keys": len(facts.data),
    }
    detail = f"{facts.role}, position {facts.position}" + (", fenced" if facts.fenced else "")
    return _seen(name, site, healthy=role != "down", role=role, detail=detail, data=data)


def _seen(
    name: str, site: str, *, healthy: bool, role: str, detail: str, data: Any = None
) -> ComponentObservation:
    return ComponentObservation(
        component=name,
        site=site,
        driver="kv",
        healthy=healthy,
        role=role,
        detail=detail,
        data=data or {},
        observed_at=time.time(),
    )
