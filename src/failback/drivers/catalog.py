"""The drivers failback knows: adding a driver is one line in ``DRIVERS``.

Everything else asks this module: the config package for the settings models (the
component union), the observer for a component's driver, the engine for the code of a
step's action, the planner and the monitor for roles and capabilities.

A driver that lives outside failback (a plugin, the test suite's ``kv`` driver) is one
line too, without editing failback: ``FAILBACK_DRIVERS=package.module:DriverClass`` (a
comma-separated list), or an entry point of the ``failback.drivers`` group in the
plugin's own package metadata (``[project.entry-points."failback.drivers"]``). Both are
read once, when this module is imported, so that every process of failback (the CLI,
the API server, the monitor and the runs they execute in-process) knows the same
drivers; a bad one stops failback with a one-line ``DriverRegistrationError`` instead
of leaving a component it cannot drive. Commands run by the ``command`` driver do not
see the variable (``hosts.base.INHERITED_ENV``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import Any

from failback.drivers.base import Action, Capability, Driver, Role
from failback.drivers.command.driver import CommandDriver
from failback.drivers.dns.driver import DnsDriver
from failback.drivers.haproxy.driver import HaproxyDriver
from failback.drivers.pgbouncer.driver import PgbouncerDriver
from failback.drivers.postgres.driver import PostgresDriver
from failback.drivers.route.driver import RouteDriver
from failback.errors import FailbackError
from failback.model.component import ComponentSettings

BUILT_IN: tuple[Driver[Any], ...] = (
    PostgresDriver(),
    HaproxyDriver(),
    PgbouncerDriver(),
    CommandDriver(),
    RouteDriver(),
    DnsDriver(),
)
"""The drivers shipped with failback: the catalog line of an in-tree driver."""

EXTRA_DRIVERS_ENV = "FAILBACK_DRIVERS"
"""Comma-separated ``module:Class`` of drivers that live outside failback."""

ENTRY_POINT_GROUP = "failback.drivers"
"""Package-metadata group under which an installed plugin names its driver class."""

_USAGE = (
    f"{EXTRA_DRIVERS_ENV} is a comma-separated list of module:Class, e.g. "
    "mypackage.driver:MyDriver, whose module is importable (check PYTHONPATH) and whose "
    "class subclasses failback.drivers.base.Driver"
)


class DriverRegistrationError(FailbackError):
    """A driver named outside failback (``FAILBACK_DRIVERS``, an entry point) is unusable."""

    exit_code = 2


def _load_driver(reference: str, *, source: str, hint: str) -> Driver[Any]:
    """Import ``module:Class`` and make one instance of that driver.

    Everything that can go wrong with a reference (no colon, a module that does not
    import, a missing name, not a Driver, no name or Settings) is one error saying
    where the reference came from (``source``) and what to do (``hint``).
    """
    module_name, colon, class_name = reference.partition(":")
    if not colon or not module_name.strip() or not class_name.strip():
        raise DriverRegistrationError(f"{source}: {reference!r} is not module:Class", hint)
    try:
        module = importlib.import_module(module_name.strip())
    except Exception as exc:  # any failure of a plugin's import is that plugin's problem
        raise DriverRegistrationError(
            f"{source}: cannot import {module_name.strip()!r} ({type(exc).__name__}: {exc})",
            hint,
        ) from exc
    found = getattr(module, class_name.strip(), None)
    if not (isinstance(found, type) and issubclass(found, Driver)):
        raise DriverRegistrationError(
            f"{source}: {reference!r} is not a Driver class of {module_name.strip()!r}", hint
        )
    name = getattr(found, "name", None)
    settings = getattr(found, "Settings", None)
    if not isinstance(name, str) or not name:
        raise DriverRegistrationError(f"{source}: {reference!r} has no name", hint)
    if not (isinstance(settings, type) and issubclass(settings, ComponentSettings)):
        raise DriverRegistrationError(
            f"{source}: {reference!r} has no Settings (a ComponentSettings subclass)", hint
        )
    try:
        return found()
    except Exception as exc:
        raise DriverRegistrationError(
            f"{source}: {reference!r} could not be created ({type(exc).__name__}: {exc})", hint
        ) from exc


def drivers_from_environment(environ: Mapping[str, str]) -> tuple[Driver[Any], ...]:
    """The drivers ``FAILBACK_DRIVERS`` names (none when unset or empty)."""
    value = environ.get(EXTRA_DRIVERS_ENV, "")
    source = f"{EXTRA_DRIVERS_ENV}={value!r}"
    references = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(_load_driver(ref, source=source, hint=_USAGE) for ref in references)


def drivers_from_entry_points() -> tuple[Driver[Any], ...]:
    """The drivers installed packages declare in the ``failback.drivers`` group."""
    found = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        source = f"entry point {point.name!r} of group {ENTRY_POINT_GROUP!r}"
        hint = (
            f"fix or uninstall the package that declares it ({point.value}); its value "
            "must be module:Class of a failback Driver"
        )
        found.append(_load_driver(point.value, source=source, hint=hint))
    return tuple(found)


def _without_repeats(drivers: Iterable[Driver[Any]]) -> tuple[Driver[Any], ...]:
    """The same class named twice (the variable and an entry point) counts once."""
    seen: list[type[Driver[Any]]] = []
    kept = []
    for driver in drivers:
        if type(driver) not in seen:
            seen.append(type(driver))
            kept.append(driver)
    return tuple(kept)


DRIVERS: tuple[Driver[Any], ...] = _without_repeats(
    (*BUILT_IN, *drivers_from_entry_points(), *drivers_from_environment(os.environ))
)
"""Every driver of this process: the built-in ones, then the plugins."""


def _index() -> dict[str, Driver[Any]]:
    found: dict[str, Driver[Any]] = {}
    for driver in DRIVERS:
        if driver.name in found:
            raise DriverRegistrationError(
                f"two drivers are named {driver.name!r}: {type(found[driver.name]).__name__}"
                f" and {type(driver).__name__}",
                f"a driver added by {EXTRA_DRIVERS_ENV} or an entry point needs a name of its own",
            )
        found[driver.name] = driver
    return found


_BY_NAME = _index()


def _actions() -> dict[str, type[Action]]:
    found: dict[str, type[Action]] = {}
    for driver in DRIVERS:
        for action in driver.actions:
            if action.name in found and found[action.name] is not action:
                raise DriverRegistrationError(
                    f"action {action.name} is defined by two drivers",
                    "prefix a driver's action names with the driver's name",
                )
            found[action.name] = action
    return found


_ACTIONS = _actions()


def driver_names() -> list[str]:
    return list(_BY_NAME)


def driver_named(name: str) -> Driver[Any] | None:
    return _BY_NAME.get(name)


def driver_of(settings: Any) -> Driver[Any]:
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
