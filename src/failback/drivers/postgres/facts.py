"""Adapt the postgres driver's observation to the service-wide ComponentObservation."""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.kept import kept
from failback.drivers.postgres.errors import PgError, PgStateError
from failback.drivers.postgres.node import PgNode, node_from_component
from failback.drivers.postgres.node_facts import PgObservation, observation_at_hand, observe
from failback.hosts import Host
from failback.model.observed import ComponentObservation

NODE_REUSE_S = 10.0
"""How long the monitor's probes reuse a component's node (``failback.drivers.kept``)
before building it again from the topology. Building it reads both password secrets
(a file each) and, without ``bin_dir``, asks the machine where PostgreSQL is: about a
sixth of a probe's CPU at a thousand components (py-spy, bench/monitor_scale.py). A
secret changed in its file is used by the probes within this many seconds; runs and
``failback status`` always build the node afresh."""


def observe_postgres_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """Reachable means healthy here; the role (and stale-primary) is judged by the caller."""
    del service
    try:
        node = _node(component, site, host)
        seen = observe(host, node)
    except PgError as exc:
        return ComponentObservation(
            component=name, site=site, driver="postgres", healthy=False, role="unknown",
            detail=exc.message, observed_at=time.time(),
            data={"misconfigured": isinstance(exc, PgStateError)},
        )  # fmt: skip
    return _component_observation(name, site, seen)


def observe_postgres_at_hand(name: str, component: Any, site: str) -> ComponentObservation | None:
    """The component's observation from what is at hand (a node built less than
    ``NODE_REUSE_S`` ago, and the node's observation another probe made within the
    scope's ``share_within``), or None. No I/O: the monitor's event loop calls it."""
    pool = kept()
    if pool is None:
        return None
    where = pool.reused(_node_key(component, site), NODE_REUSE_S, anchor=component)
    if where is None:
        return None
    node, host_name = where
    seen = observation_at_hand(host_name, node)
    return None if seen is None else _component_observation(name, site, seen)


def _node_key(component: Any, site: str) -> tuple[Any, ...]:
    return ("postgres-node", id(component), site)


def _node(component: Any, site: str, host: Host) -> PgNode:
    """The node of ``site``: built from the topology, or under the monitor's ``keeping``
    reused for ``NODE_REUSE_S`` (with the name of its machine, for ``observe_at_hand``).
    A node whose ``bin_dir`` could not be found (its machine did not answer) is not
    reused: the next observation looks again."""
    pool = kept()
    if pool is None:
        return node_from_component(component, site, host)
    node, _ = pool.reuse(
        _node_key(component, site),
        lambda: (node_from_component(component, site, host), host.name),
        NODE_REUSE_S,
        anchor=component,
        keep=lambda made: bool(made[0].bin_dir),
    )
    return node  # type: ignore[no-any-return]


def _component_observation(name: str, site: str, seen: PgObservation) -> ComponentObservation:
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
