"""The ``pgbouncer`` driver.

A PgBouncer in front of the database: PAUSE, re-point, RESUME (clients wait, not fail)."""

from __future__ import annotations

from typing import ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.pgbouncer.actions import PoolPause, PoolRoute
from failback.drivers.pgbouncer.facts import observe_pgbouncer_component
from failback.drivers.pgbouncer.settings import PgbouncerComponent
from failback.drivers.pgbouncer.steps import pool_steps
from failback.drivers.planning import PlanRequest
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class PgbouncerDriver(Driver[PgbouncerComponent]):
    name = "pgbouncer"
    Settings = PgbouncerComponent
    actions = (
        PoolPause,
        PoolRoute,
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CLIENT_ENDPOINT})

    def role(self, settings: PgbouncerComponent) -> Role:
        return Role.POOL

    def observe(
        self, host: Host, service: str, name: str, settings: PgbouncerComponent, site: str
    ) -> ComponentObservation:
        return observe_pgbouncer_component(host, service, name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return pool_steps(request)

    def client_endpoint(self, settings: PgbouncerComponent) -> str | None:
        return f"{settings.options.host}:{settings.options.port}"
