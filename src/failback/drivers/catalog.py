"""The drivers failback knows: adding a driver is one line in ``DRIVERS``.

Everything else asks this module: the config package for the settings models (the
component union), the observer for a component's driver, the engine for the code of a
step's action, the planner and the monitor for roles and capabilities.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.base import Action, Capability, Driver, Role
from failback.drivers.command.driver import CommandDriver
from failback.drivers.haproxy.driver import HaproxyDriver
from failback.drivers.pgbouncer.driver import PgbouncerDriver
from failback.drivers.postgres.driver import PostgresDriver
from failback.model.component import ComponentSettings

DRIVERS: tuple[Driver, ...] = (
    PostgresDriver(),
    HaproxyDriver(),
    PgbouncerDriver(),
    CommandDriver(),
)


def _index() -> dict[str, Driver]:
    found: dict[str, Driver] = {}
    for driver in DRIVERS:
        if driver.name in found:
            raise RuntimeError(f"two drivers are named {driver.name!r}")
        found[driver.name] = driver
    return found


_BY_NAME = _index()


def _actions() -> dict[str, type[Action]]:
    found: dict[str, type[Action]] = {}
    for driver in DRIVERS:
        for action in driver.actions:
            if action.name in found and found[action.name] is not action:
                raise RuntimeError(f"action {action.name} is defined by two drivers")
            found[action.name] = action
    return found


_ACTIONS = _actions()


def driver_names() -> list[str]:
    return list(_BY_NAME)


def driver_named(name: str) -> Driver | None:
    return _BY_NAME.get(name)


def driver_of(settings: Any) -> Driver:
    """The driver of a component (its settings' ``driver:``)."""
    return _BY_NAME[settings.driver]


def settings_models() -> tuple[type[ComponentSettings], ...]:
    """Every driver's ``Settings``: the config package builds its component union from it."""
    return tuple(driver.Settings for driver in DRIVERS)


def action_class(name: str) -> type[Action] | None:
    """The code behind a step's ``action`` name, or None when no driver defines it."""
    return _ACTIONS.get(name)


def role_of(settings: Any) -> Role:
    return driver_of(settings).role(settings)


def has_capability(settings: Any, capability: Capability) -> bool:
    return capability in driver_of(settings).capabilities


def components_with_role(service: Any, *roles: Role) -> list[tuple[str, Any]]:
    """(name, settings) of the service's components playing one of ``roles``, in the
    order the roles are given, then file order."""
    found = [
        (name, settings)
        for name, settings in service.components.items()
        if role_of(settings) in roles
    ]
    return sorted(found, key=lambda item: roles.index(role_of(item[1])))
