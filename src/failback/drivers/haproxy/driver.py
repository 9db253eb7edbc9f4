"""The ``haproxy`` driver.

An HAProxy backend: the write router of a database, or a stateless tier shifted by weight."""

from __future__ import annotations

from typing import ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.haproxy.actions import RouterFence, RouterRoute, TrafficGateStep, TrafficShift
from failback.drivers.haproxy.facts import observe_haproxy_at_hand, observe_haproxy_component
from failback.drivers.haproxy.settings import HaproxyComponent
from failback.drivers.haproxy.steps import router_steps, tier_steps
from failback.drivers.haproxy.traffic_health import HaproxyTrafficHealth
from failback.drivers.planning import PlanRequest
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class HaproxyDriver(HaproxyTrafficHealth, Driver[HaproxyComponent]):
    name = "haproxy"
    Settings = HaproxyComponent
    actions = (
        RouterFence,
        RouterRoute,
        TrafficShift,
        TrafficGateStep,
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.CLIENT_ENDPOINT, Capability.TRAFFIC_HEALTH}
    )

    def role(self, settings: HaproxyComponent) -> Role:
        return Role.TIER if settings.options.tier == "stateless" else Role.ROUTER

    def observe(
        self, host: Host, service: str, name: str, settings: HaproxyComponent, site: str
    ) -> ComponentObservation:
        return observe_haproxy_component(host, service, name, settings, site)

    def observe_at_hand(
        self, service: str, name: str, settings: HaproxyComponent, site: str
    ) -> ComponentObservation | None:
        return observe_haproxy_at_hand(name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        if self.role(request.settings) is Role.TIER:
            return tier_steps(request)
        return router_steps(request)

    def client_endpoint(self, settings: HaproxyComponent) -> str | None:
        endpoint = settings.options.endpoint
        return str(endpoint) if endpoint else None
