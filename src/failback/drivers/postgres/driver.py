"""The ``postgres`` driver.

A PostgreSQL primary/standby pair: fence, stop, replay, promote, rewind or re-clone."""

from __future__ import annotations

from typing import ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.planning import PlanCheck, PlanRequest
from failback.drivers.postgres.actions import (
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
from failback.drivers.postgres.facts import observe_postgres_component
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
        PgResync,
        PgCatchup,
        PgVerifyWrite,
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.SQL, Capability.WAL_POSITION, Capability.SYNCHRONOUS_REPLICATION}
    )

    def role(self, settings: PostgresComponent) -> Role:
        return Role.DATABASE

    def observe(
        self, host: Host, service: str, name: str, settings: PostgresComponent, site: str
    ) -> ComponentObservation:
        return observe_postgres_component(host, service, name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return database_steps(request)

    def check_plan(self, check: PlanCheck) -> list[str]:
        return check_database_plan(check)
