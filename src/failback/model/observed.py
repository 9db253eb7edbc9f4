"""Observed state of a service, as gathered (read-only) before planning."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

Role = str
"""``primary`` | ``standby`` | ``stale-primary`` | ``down`` | ``active`` | ``unknown``"""


class ComponentObservation(BaseModel):
    """One component at one site, as last seen."""

    component: str
    site: str
    driver: str
    healthy: bool
    kind: str = ""
    """The component's part in the service (``failback.drivers.base.Role``: database,
    router, pool, tier, operator), so that readers ask for a role, not a driver."""
    role: Role = "unknown"
    detail: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    observed_at: float = 0.0


class ServiceState(BaseModel):
    """A service's observed state: where it is active and how each part looks."""

    service: str
    primary_site: str
    active_site: str
    needs_resync: list[str] = Field(default_factory=list)
    components: list[ComponentObservation] = Field(default_factory=list)
    sync_mode: dict[str, Any] | None = None
    """Replication mode the monitor last saw on the primary (``{"mode": "sync"|"relaxed"|
    "async", "standby": site, "since": ts}``); None when never observed."""
    passing_since: dict[str, float | None] = Field(default_factory=dict)
    """``component@site`` -> since when a running monitor has seen it pass (None: it sees
    it failing now). Only fresh records: a component missing here has no history, and a
    single observation cannot say how long it has been healthy."""
    after_incident: dict[str, Any] | None = None
    """The service's ``after_incident`` mark (``{"reason", "by", "at"}``): its failback
    carries the clean_room gate. None when not marked."""
    baseline_recorded_at: float | None = None
    """When the primary site's baseline was recorded (read only for a marked service);
    None when there is no usable one."""

    @property
    def degraded(self) -> bool:
        return self.active_site != self.primary_site

    def at(self, site: str) -> list[ComponentObservation]:
        return [c for c in self.components if c.site == site]

    def site_healthy(self, site: str) -> bool:
        observed = self.at(site)
        return bool(observed) and all(c.healthy for c in observed)

    def get(self, component: str, site: str) -> ComponentObservation | None:
        for c in self.components:
            if c.component == component and c.site == site:
                return c
        return None
