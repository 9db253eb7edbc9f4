"""Observe a service: every component at every site, through its driver (read-only)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from failback.baseline.files import recorded_at
from failback.baseline.incident import incident_mark
from failback.config import Service, Topology
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import driver_named, driver_of
from failback.errors import FailbackError
from failback.hosts import HostSet
from failback.model.observed import ComponentObservation, ServiceState
from failback.store import Journal


def observe_component(
    hosts: HostSet, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """Observe one component at one site through its driver, on the machine it runs on;
    never raises for an unhealthy component, nor for a machine that cannot be reached
    (the observation says so: a partitioned site is a fact, not an error)."""
    driver = driver_of(component)
    try:
        observation = driver.observe(
            hosts.for_component(component, site), service, name, component, site
        )
    except FailbackError as exc:  # the machine is unreachable (ssh refused, timed out...)
        observation = ComponentObservation(
            component=name,
            site=site,
            driver=driver.name,
            healthy=False,
            role="unknown",
            detail=exc.message,
            observed_at=time.time(),
            data={"host_unreachable": hosts.name_for(component, site)},
        )
    observation.kind = driver.role(component).value
    return observation


def observe_component_at_hand(
    service: str, name: str, component: Any, site: str
) -> ComponentObservation | None:
    """What ``observe_component`` would say now, made from an answer another probe
    received a moment ago (``Driver.observe_at_hand``), or None: there is none, and the
    component must be observed. Never blocks (the monitor's event loop calls it); an
    error in the driver's shortcut is None too (the observation then says what it is)."""
    driver = driver_of(component)
    try:
        observation = driver.observe_at_hand(service, name, component, site)
    except Exception:
        return None
    if observation is not None:
        observation.kind = driver.role(component).value
    return observation


def observe_service(hosts: HostSet, topology: Topology, service_name: str, journal: Journal) -> Any:
    """Observe every component at every site, plus the recorded active site.

    Read-only, always (``failback status``, ``plan``, the API and metrics call it): a
    write here could put back an active site read before a concurrent run recorded a
    new one. What is worth remembering from an observation (the primary's position)
    is written by the monitor, with its own key (``record_primary_position``).
    """

    service = topology.service(service_name)
    recorded = journal.service_state(service_name) or {}
    pairs = [
        (name, component, site)
        for name, component in service.components.items()
        for site in component.sites
    ]
    # all at once: a dead site costs one connect timeout, not one per component, and
    # the machines' first connections are opened side by side
    with ThreadPoolExecutor(max_workers=min(16, len(pairs) or 1)) as pool:
        observations = list(pool.map(lambda p: observe_component(hosts, service_name, *p), pairs))
    baseline_at = None
    if incident_mark(recorded) is not None:  # a stat and a small read, only when marked
        baseline_at = recorded_at(journal.state_dir, service.primary_site)
    state = service_state(service_name, service, recorded, observations, baseline_at=baseline_at)
    state.passing_since = monitored_passing_since(journal.health(service_name), time.time())
    return state


HEALTH_FRESH_S = 5.0
"""A monitor's health record older than this (or than three of its probe's intervals)
is no history: that monitor may have stopped."""


def monitored_passing_since(
    records: dict[str, dict[str, Any]], now: float
) -> dict[str, float | None]:
    """``component@site`` -> since when the monitor has seen it pass, from its fresh
    records (what a failback's stability needs and one observation cannot tell)."""
    found: dict[str, float | None] = {}
    for record in records.values():
        if record.get("kind") != "component" or not record.get("site"):
            continue
        last_at = record.get("last_at")
        fresh = max(HEALTH_FRESH_S, 3 * float(record.get("interval_s") or 0))
        if last_at is None or now - float(last_at) > fresh:
            continue
        since = record.get("passing_since")
        key = f"{record.get('component')}@{record['site']}"
        found[key] = (
            float(since) if since is not None and record.get("status") == "passing" else None
        )
    return found


def service_state(
    service_name: str,
    service: Service,
    recorded: dict[str, Any],
    observations: list[ComponentObservation],
    *,
    baseline_at: float | None = None,
) -> ServiceState:
    """The service's state from observations of its components and what the journal
    recorded (active site, sites needing a resync, replication mode, the incident mark).
    ``baseline_at``: when the primary site's baseline was recorded, if known."""
    active_site = recorded.get("active_site", service.primary_site)
    mark_stale_primaries(observations, active_site)
    return ServiceState(
        service=service_name,
        primary_site=service.primary_site,
        active_site=active_site,
        needs_resync=recorded.get("needs_resync", []),
        sync_mode=recorded.get("sync_mode"),
        components=observations,
        after_incident=incident_mark(recorded),
        baseline_recorded_at=baseline_at,
    )


def observe_service_once(
    topology: Topology, service_name: str, journal: Journal, hosts: HostSet | None = None
) -> Any:
    """``observe_service`` on ``hosts``, or on the topology's machines connected for
    this one observation (a CLI command, a plan)."""
    if hosts is not None:
        return observe_service(hosts, topology, service_name, journal)
    with topology.open_hosts() as opened:
        return observe_service(opened, topology, service_name, journal)


def mark_stale_primaries(observations: list[ComponentObservation], active_site: str) -> None:
    """A database claiming the primary role away from the active site is a stale primary.

    Its router server is shown beside it, so a person sees at once whether it is fenced.
    """
    fenced_sites = {
        o.site for o in observations if o.kind in (Role.ROUTER, Role.POOL) and o.role != "active"
    }
    for obs in observations:
        if obs.kind == Role.DATABASE and obs.role == "primary" and obs.site != active_site:
            obs.role = "stale-primary"
            fenced = "fenced at the router" if obs.site in fenced_sites else "NOT FENCED"
            obs.detail = f"stale primary ({fenced}); {obs.detail}"
            obs.data["fenced"] = obs.site in fenced_sites


def reports_wal_position(obs: ComponentObservation) -> bool:
    """The observation's driver declares WAL_POSITION: its ``data.current_lsn`` is the
    primary's position (other drivers' data may use the key for something else)."""
    driver = driver_named(obs.driver)
    return driver is not None and Capability.WAL_POSITION in driver.capabilities


def primary_position(
    observations: list[ComponentObservation], active_site: str
) -> dict[str, Any] | None:
    """The active primary's WAL position as observed: a later unplanned failover reports
    how far beyond what the standby had received it was (what may be lost)."""
    for obs in observations:
        if (
            obs.kind == Role.DATABASE
            and reports_wal_position(obs)
            and obs.site == active_site
            and obs.role == "primary"
            and obs.data.get("current_lsn")
        ):
            return {"site": obs.site, "lsn": obs.data["current_lsn"], "at": obs.observed_at}
    return None


def record_primary_position(journal: Journal, state: Any) -> None:
    """Remember the active primary's last seen position under its own key, atomically,
    without touching the active site (the monitor's write; observing never writes)."""
    position = primary_position(state.components, state.active_site)
    if position is not None:
        journal.update_service_data(state.service, state.primary_site, last_primary=position)
