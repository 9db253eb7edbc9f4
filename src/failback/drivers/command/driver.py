"""The ``command`` driver.

Anything driven by the operator's scripts: a VIP, DNS, a web tier, a cloud API."""

from __future__ import annotations

from typing import Any, ClassVar

from failback.drivers.base import Capability, Driver, Role
from failback.drivers.command.actions import CommandStep
from failback.drivers.command.facts import observe_command_component
from failback.drivers.command.settings import CommandComponent
from failback.hosts import Host
from failback.model.observed import ComponentObservation


class CommandDriver(Driver):
    name = "command"
    Settings = CommandComponent
    actions = (CommandStep,)
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    def role(self, settings: Any) -> Role:
        return Role.OPERATOR

    def observe(
        self, host: Host, service: str, name: str, settings: Any, site: str
    ) -> ComponentObservation:
        return observe_command_component(host, service, name, settings, site)
