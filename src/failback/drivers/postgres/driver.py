"""The ``postgres`` driver.

A PostgreSQL primary/standby pair: fence, stop, replay, promote, rewind or re-clone."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.drilling import DrillRequest
from failback.drivers.planning import PlanCheck, PlanRequest
from failback.drivers.postgres import self_fence
from failback.drivers.postgres.actions import (
    PgCaptureDiverged,
    PgCatchup,
    PgCheckpoint,
    PgFence,
    PgPreflight,
    PgPromote,
    PgResync,
    PgStopPrimary,
    PgVerifyWrite,
    PgWaitReplay,
)
from failback.drivers.postgres.capture_kept import keep_capture, keep_capture_at_hand
from failback.drivers.postgres.drill_actions import DRILL_ACTIONS
from failback.drivers.postgres.drill_actions import precheck as drill_precheck
from failback.drivers.postgres.drill_steps import drill_steps
from failback.drivers.postgres.facts import observe_postgres_at_hand, observe_postgres_component
from failback.drivers.postgres.node import node_from_component
from failback.drivers.postgres.refusals import check_database_plan
from failback.drivers.postgres.settings import PostgresComponent
from failback.drivers.postgres.sql_check import PostgresSql
from failback.drivers.postgres.steps import database_steps
from failback.drivers.postgres.sync_mode import PostgresSyncMode
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class PostgresDriver(PostgresSyncMode, PostgresSql, Driver[PostgresComponent]):
    name = "postgres"
    Settings = PostgresComponent
    actions = (
        PgPreflight,
        PgFence,
        PgStopPrimary,
        PgCheckpoint,
        PgWaitReplay,
        PgPromote,
        PgCaptureDiverged,
        PgResync,
        PgCatchup,
        PgVerifyWrite,
        *DRILL_ACTIONS,
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SQL,
            Capability.WAL_POSITION,
            Capability.SYNCHRONOUS_REPLICATION,
            Capability.SELF_FENCE,
            Capability.DIVERGED_CAPTURE,
            Capability.DRILL,
        }
    )

    def role(self, settings: PostgresComponent) -> Role:
        return Role.DATABASE

    def observe(
        self, host: Host, service: str, name: str, settings: PostgresComponent, site: str
    ) -> ComponentObservation:
        return observe_postgres_component(host, service, name, settings, site)

    def observe_at_hand(
        self, service: str, name: str, settings: PostgresComponent, site: str
    ) -> ComponentObservation | None:
        return observe_postgres_at_hand(name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return database_steps(request)

    def check_plan(self, check: PlanCheck) -> list[str]:
        return check_database_plan(check)

    def keep_capture(
        self, settings: PostgresComponent, primary_site: str, standby_site: str
    ) -> dict[str, Any]:
        if not settings.options.capture_diverged:
            return {"site": primary_site, "problem": None, "off": True}
        return keep_capture(settings, primary_site, standby_site)

    def keep_capture_at_hand(
        self, settings: PostgresComponent, primary_site: str, standby_site: str
    ) -> dict[str, Any] | None:
        if not settings.options.capture_diverged:
            return {"site": primary_site, "problem": None, "off": True}
        return keep_capture_at_hand(settings, primary_site, standby_site)

    def drill_precheck(
        self, settings: PostgresComponent, site: str, host: Host, parent: str | None = None
    ) -> dict[str, Any]:
        return drill_precheck(settings, site, host, parent)

    def drill_steps(self, request: DrillRequest) -> list[StepSpec]:
        return drill_steps(request)

    def self_fence(self, settings: PostgresComponent, site: str, host: Host) -> dict[str, Any]:
        return self_fence.fence(host, node_from_component(settings, site, host))

    def self_fenced(self, observed: Mapping[str, Any]) -> bool:
        return bool(observed.get("read_only") and observed.get("self_fenced"))

    def lift_self_fence(self, settings: PostgresComponent, site: str, host: Host) -> bool:
        return self_fence.unfence(host, node_from_component(settings, site, host))
