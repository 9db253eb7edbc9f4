"""One place that knows which driver observes which component."""

from __future__ import annotations

import time
from typing import Any

from failback.hosts import Host
from failback.model.state import ComponentObservation


def observe_component(
    host: Host, service: str, name: str, component: Any, site: str
) -> ComponentObservation:
    """Observe one component at one site; never raises for an unhealthy component."""
    driver = component.driver
    if driver == "command":
        from failback.drivers.command.observe import observe_command_component

        return observe_command_component(host, service, name, component, site)
    if driver == "postgres":
        from failback.drivers.postgres.observation import observe_postgres_component

        return observe_postgres_component(host, service, name, component, site)
    if driver == "haproxy":
        from failback.drivers.haproxy.observation import observe_haproxy_component

        return observe_haproxy_component(host, service, name, component, site)
    return ComponentObservation(
        component=name,
        site=site,
        driver=driver,
        healthy=False,
        detail=f"no observer for driver {driver}",
        observed_at=time.time(),
    )


def observe_service(host: Host, topology: Any, service_name: str, journal: Any) -> Any:
    """Observe every component at every site, plus the recorded active site."""
    from failback.model.state import ServiceState

    service = topology.service(service_name)
    recorded = journal.service_state(service_name) or {}
    observations = []
    for name, component in service.components.items():
        for site in component.sites:
            observations.append(observe_component(host, service_name, name, component, site))
    return ServiceState(
        service=service_name,
        primary_site=service.primary_site,
        active_site=recorded.get("active_site", service.primary_site),
        needs_resync=recorded.get("needs_resync", []),
        components=observations,
    )
