"""The ``command`` driver.

Anything driven by the operator's scripts: a VIP, DNS, a web tier, a cloud API."""

from __future__ import annotations

from typing import ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.command.actions import CommandStep
from failback.drivers.command.facts import observe_command_component
from failback.drivers.command.settings import CommandComponent
from failback.drivers.command.steps import command_steps
from failback.drivers.planning import PlanRequest
from failback.hosts import Host
from failback.model.observed import ComponentObservation
from failback.model.plan import StepSpec


class CommandDriver(Driver[CommandComponent]):
    name = "command"
    Settings = CommandComponent
    actions = (CommandStep,)
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def role(self, settings: CommandComponent) -> Role:
        return Role.OPERATOR

    def observe(
        self, host: Host, service: str, name: str, settings: CommandComponent, site: str
    ) -> ComponentObservation:
        return observe_command_component(host, service, name, settings, site)

    def steps(self, request: PlanRequest) -> list[StepSpec]:
        return command_steps(request)
