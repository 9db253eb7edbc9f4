"""The ``dns`` driver.

A name in a zone that follows the active site: the return from a secondary cloud or
region, where clients find the service by DNS rather than through a router failback
drives. Its role is a stateless tier's (it takes part in the traffic steps); its
failure, like a router's, is not a failure of the site it points at.
"""

from __future__ import annotations

from typing import Any, ClassVar

from failback.drivers.base import Capability, Driver, Role, TrafficWatch
from failback.drivers.dns.actions import DNS_ACTIONS
from failback.drivers.dns.facts import observe_dns
from failback.drivers.dns.refusals import dns_check_plan
from failback.drivers.dns.settings import DnsComponent
from failback.drivers.dns.steps import dns_steps
from failback.drivers.dns.watch import dns_traffic_watch
from failback.drivers.planning import PlanCheck, PlanRequest
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class DnsDriver(Driver[DnsComponent]):
    name = "dns"
    Settings = DnsComponent
    actions = DNS_ACTIONS
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.TRAFFIC_HEALTH})

    def role(self, settings: DnsComponent) -> Role:
        return Role.TIER

    def observe(
        self, host: Host, service: str, name: str, settings: DnsComponent, site: str
    ) -> ComponentObservation:
        """``host`` is unused: the server is asked over the network, never by a command."""
        del host, service
        return observe_dns(name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return dns_steps(request)

    def check_plan(self, check: PlanCheck) -> list[str]:
        return dns_check_plan(check)

    def traffic_watch(self, settings: DnsComponent, site: str, thresholds: Any) -> TrafficWatch:
        return dns_traffic_watch(settings, site)
