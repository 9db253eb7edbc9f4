"""The ``kv`` driver: the one class the catalog loads.

Registered without editing failback: ``FAILBACK_DRIVERS=tests.kvdriver.driver:KvDriver``
(the repository's root on ``PYTHONPATH``). Everything failback needs to know about a
kv store is declared here: its name, its settings, its role (a database: it holds the
service's data, replicated, primary at one site), its observation, its step code, its
steps by phase, and what makes a run unsafe for it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.planning import PlanCheck, PlanRequest, RunKind
from failback.errors import PlanRefused
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec
from tests.kvdriver.actions import KV_ACTIONS
from tests.kvdriver.facts import observe_kv
from tests.kvdriver.settings import KvComponent
from tests.kvdriver.steps import kv_steps


class KvDriver(Driver):
    name = "kv"
    Settings = KvComponent
    actions = KV_ACTIONS
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def role(self, settings: Any) -> Role:
        return Role.DATABASE

    def observe(
        self, host: Host, service: str, name: str, settings: Any, site: str
    ) -> ComponentObservation:
        return observe_kv(host, name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return kv_steps(request)

    def check_plan(self, check: PlanCheck) -> list[str]:
        """Refuse what would lose acknowledged writes or leave two primaries."""
        old = check.state.get(check.component, check.from_site)
        new = check.state.get(check.component, check.to_site)
        old_primary = old is not None and old.healthy and old.role == "primary"
        if check.kind is RunKind.FAILBACK:
            if not old_primary:
                raise PlanRefused(
                    f"{check.component} at {check.from_site} is "
                    f"{old.role if old else 'unknown'}, not the primary: nothing to fail back",
                    hint="`failback status` shows each site's role",
                )
            return []
        if check.kind is not RunKind.FAILOVER:
            return []
        if new is None or not new.healthy:
            raise PlanRefused(
                f"{check.component} at {check.to_site} is down: it cannot take the role",
                hint="start that site's store first",
            )
        if check.to_site in check.state.needs_resync and not check.accept_data_loss:
            raise PlanRefused(
                f"{check.to_site} has not been resynced since it lost the primary role",
                hint="fail back (which resyncs it) or --accept-data-loss",
            )
        if check.planned and not old_primary:
            raise PlanRefused(
                f"a planned failover needs the primary at {check.from_site} alive; it is "
                f"{old.role if old else 'unknown'}",
                hint="for a failed primary run the unplanned failover (without --planned)",
            )
        if not check.planned and old_primary and not check.force:
            raise PlanRefused(
                f"{check.component} at {check.from_site} is a healthy primary: an unplanned "
                "failover would throw away its latest writes",
                hint="use --planned for a zero-loss move, or --force",
            )
        if not check.planned:
            return [f"{check.from_site} will need a resync before it can return"]
        return []
