"""Checks that need the whole topology: references between sections, pairs of sites.

pydantic checks each value on its own; these rules compare values with each other
(a component at a site nobody declared, a check naming a component that does not
exist, a replicated database at one site only). Each finding points at the exact
key to fix, with the names that would have been valid.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from failback.config.errors import ConfigWarning, Problem
from failback.config.host_refs import check_host_references
from failback.config.models import Service
from failback.config.yaml_source import KeyPath, YamlDocument, dotted
from failback.drivers.base import Capability
from failback.drivers.catalog import driver_names, driver_of
from failback.model.fields import valid_name

__all__ = ["Reporter", "check_raw", "check_service", "warn_service"]


class Reporter:
    """Collects problems, turning a key path into ``FILE:LINE: dotted.key``."""

    def __init__(self, file: str, doc: YamlDocument) -> None:
        self.file = file
        self.doc = doc
        self.problems: list[Problem] = []
        self.warnings: list[ConfigWarning] = []

    def add(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        self.problems.append(
            Problem(self.file, self.doc.line_of(path), dotted(path), message, hint)
        )

    def warn(self, path: KeyPath, message: str, hint: str | None = None, **about: str) -> None:
        """A warning: the file stays valid (``about``: service, component, site, action)."""
        self.warnings.append(
            ConfigWarning(self.file, self.doc.line_of(path), dotted(path), message, hint, **about)
        )

    def line(self, path: KeyPath) -> int | str:
        line = self.doc.line_of(path)
        return "?" if line is None else line


def _known(name: str, choices: Iterable[str], what: str) -> str:
    options = list(choices)
    close = difflib.get_close_matches(name, options, n=1)
    listed = ", ".join(options) if options else "none"
    if close:
        return f"did you mean {close[0]!r}? declared {what}: {listed}"
    return f"declared {what}: {listed}"


def check_raw(data: dict[str, object], report: Reporter) -> None:
    """Checks that need only names, run on the raw data so they work beside type errors.

    Names must be present and usable in commands and file names; every site a service
    refers to (primary_site, component sites, check sites) must be declared. Running
    these on the raw data means a typo elsewhere in the same service does not hide them.
    """
    rule = "use letters, digits, '-', '_' or '.', starting with a letter or digit (max 63)"
    check_host_references(data, report)
    sites = data.get("sites")
    if isinstance(sites, dict):
        if not sites:
            report.add(("sites",), "no site is declared", "declare at least two sites: dc1, dc2")
        for name in sites:
            if not valid_name(name):
                report.add(("sites", name), f"{name!r} is not a valid site name", rule)
    services = data.get("services")
    if isinstance(services, dict):
        if not services:
            report.add(("services",), "no service is declared", "see examples/failback.yaml")
        for name, service in services.items():
            if not valid_name(name):
                report.add(("services", name), f"{name!r} is not a valid service name", rule)
            if not isinstance(service, dict):
                continue
            components = service.get("components")
            if isinstance(components, dict):
                for comp in components:
                    if not valid_name(comp):
                        path = ("services", name, "components", comp)
                        report.add(path, f"{comp!r} is not a valid component name", rule)
            if isinstance(sites, dict):
                _check_site_references(("services", name), service, list(sites), report)
    baseline = data.get("baseline")
    per_site = baseline.get("sites") if isinstance(baseline, dict) else None
    if isinstance(per_site, dict) and isinstance(sites, dict):
        for site in per_site:
            if isinstance(site, str) and site not in sites:
                report.add(
                    ("baseline", "sites", site),
                    f"site {site!r} is not declared in sites",
                    _known(site, list(sites), "sites"),
                )
    control_plane = data.get("control_plane")
    nodes = control_plane.get("nodes") if isinstance(control_plane, dict) else None
    if isinstance(nodes, dict) and isinstance(sites, dict):
        for node, spec in nodes.items():
            site = spec.get("site") if isinstance(spec, dict) else None
            if isinstance(site, str) and site not in sites:
                report.add(
                    ("control_plane", "nodes", node, "site"),
                    f"site {site!r} is not declared in sites",
                    _known(site, list(sites), "sites") + " (omit site: for a witness)",
                )


def _check_site_references(
    base: KeyPath, service: dict[str, Any], declared: list[str], report: Reporter
) -> None:
    def check(path: KeyPath, site: object, what: str) -> None:
        if isinstance(site, str) and site not in declared:
            report.add(
                path, f"{what}{site!r} is not declared in sites", _known(site, declared, "sites")
            )

    check((*base, "primary_site"), service.get("primary_site"), "primary site ")
    components = service.get("components")
    for comp_name, component in (components if isinstance(components, dict) else {}).items():
        sites = component.get("sites") if isinstance(component, dict) else None
        for site in sites if isinstance(sites, dict) else {}:
            check((*base, "components", comp_name, "sites", site), site, "site ")
    checks = service.get("checks")
    for index, item in enumerate(checks if isinstance(checks, list) else []):
        if isinstance(item, dict):
            check((*base, "checks", index, "site"), item.get("site"), "site ")


def check_service(
    name: str, service: Service, declared_sites: list[str] | None, report: Reporter
) -> None:
    """Every cross-reference of one service that pydantic cannot see."""
    base: KeyPath = ("services", name)
    _check_sites(name, service, declared_sites, report)
    primary_known = declared_sites is None or service.primary_site in declared_sites
    _check_components(base, service, primary_known, report)
    _check_checks(base, service, declared_sites, report)
    _check_policy(base, service, report)


def _check_sites(name: str, service: Service, declared: list[str] | None, report: Reporter) -> None:
    base: KeyPath = ("services", name)
    primary_known = declared is None or service.primary_site in declared
    if not service.components:
        report.add(
            (*base, "components"),
            "the service has no component",
            f"add at least one component (driver: {', '.join(driver_names())})",
        )
        return
    used = service.sites
    if primary_known and not any(
        service.primary_site in c.site_names for c in service.components.values()
    ):
        report.add(
            (*base, "primary_site"),
            f"no component of the service exists at its primary site {service.primary_site!r}",
            f"the components exist at: {', '.join(used[1:]) or 'no site'}",
        )
    elif len(used) < 2:
        report.add(
            (*base, "components"),
            f"the service exists at one site only ({service.primary_site}): "
            "failover needs a second site",
            "give its components a second site under 'sites:'",
        )


def _check_components(
    base: KeyPath, service: Service, primary_known: bool, report: Reporter
) -> None:
    pair: list[str] | None = None
    if len(service.sites) >= 2:
        pair = [service.primary_site, service.secondary_site]
    for comp_name, component in service.components.items():
        path: KeyPath = (*base, "components", comp_name)
        sites = component.site_names
        if not sites:
            report.add((*path, "sites"), "the component has no site", "add one per site")
            continue
        if component.pair_only:
            kind = component.driver
            if len(sites) != 2:
                report.add(
                    (*path, "sites"),
                    f"a {kind} component needs exactly 2 sites (the primary and the secondary), "
                    f"found {len(sites)}: {', '.join(sites)}",
                    f"declare it at {' and '.join(pair)}" if pair else None,
                )
            elif not primary_known:
                pass  # already reported on primary_site
            elif service.primary_site not in sites:
                report.add(
                    (*path, "sites"),
                    f"the {kind} component does not exist at the primary site "
                    f"{service.primary_site!r}",
                    f"its sites are {', '.join(sites)}",
                )
            elif pair is not None and set(sites) != set(pair):
                report.add(
                    (*path, "sites"),
                    f"the {kind} component exists at {', '.join(sites)} but the service "
                    f"fails over between {' and '.join(pair)}",
                    "every component that exists at two sites must use the service's two sites",
                )
        for problem in component.problems():
            report.add((*path, *problem.path), problem.message, problem.hint)


def _check_checks(
    base: KeyPath, service: Service, declared: list[str] | None, report: Reporter
) -> None:
    first: dict[str, int] = {}
    used = service.sites
    for index, check in enumerate(service.checks):
        path: KeyPath = (*base, "checks", index)
        if check.name in first:
            other = report.line((*base, "checks", first[check.name], "name"))
            report.add(
                (*path, "name"),
                f"duplicate check name {check.name!r} (first at line {other})",
                "check names identify results in plans and reports: make them unique",
            )
        first.setdefault(check.name, index)
        if check.site is not None:
            if declared is not None and check.site not in declared:
                pass  # reported by check_raw
            elif check.site not in used:
                report.add(
                    (*path, "site"),
                    f"the service does not run at site {check.site!r}",
                    f"its sites are {', '.join(used)}",
                )
        if check.type == "sql":
            _check_sql(path, check.component, check.site, service, report)


def _check_sql(
    path: KeyPath, comp_name: str, site: str | None, service: Service, report: Reporter
) -> None:
    capable = [
        n for n, c in service.components.items() if Capability.SQL in driver_of(c).capabilities
    ]
    component = service.components.get(comp_name)
    if component is None:
        report.add(
            (*path, "component"),
            f"the service has no component {comp_name!r}",
            _known(comp_name, capable, "components that run SQL"),
        )
    elif comp_name not in capable:
        report.add(
            (*path, "component"),
            f"{comp_name!r} is a {component.driver} component; a sql check needs a database"
            " that runs SQL",
            _known(comp_name, capable, "components that run SQL"),
        )
    elif site is not None and site in service.sites and site not in component.site_names:
        report.add(
            (*path, "site"),
            f"component {comp_name!r} does not exist at site {site!r}",
            f"it exists at {', '.join(component.site_names)}",
        )


def _check_policy(base: KeyPath, service: Service, report: Reporter) -> None:
    policy = service.policy
    path: KeyPath = (*base, "policy")
    steps = policy.traffic_steps
    if not steps:
        report.add(
            (*path, "traffic_steps"),
            "must list at least one step (100 moves all traffic at once)",
            "e.g. [10, 25, 50, 100]",
        )
    else:
        for index in range(1, len(steps)):
            if steps[index] <= steps[index - 1]:
                report.add(
                    (*path, "traffic_steps", index),
                    f"steps must increase: {steps[index]} comes after {steps[index - 1]}",
                    "e.g. [10, 25, 50, 100]",
                )
                break
        else:
            if steps[-1] != 100:
                report.add(
                    (*path, "traffic_steps", len(steps) - 1),
                    f"the last step must be 100 (all traffic back), not {steps[-1]}",
                    f"e.g. {[*steps, 100]}",
                )
    if policy.failback == "automatic" and policy.max_failbacks_per_day == 0:
        report.add(
            (*path, "max_failbacks_per_day"),
            "automatic failback with max_failbacks_per_day: 0 can never fail back",
            "allow at least 1, or set failback: manual",
        )


def warn_service(name: str, service: Service, report: Reporter) -> None:
    """Warnings about a valid service: what works, but cannot be made safe after a crash
    (each driver's ``Settings.warnings``, e.g. a mutating command without ``check:``)."""
    for comp_name, component in service.components.items():
        for warning in component.warnings():
            report.warn(
                ("services", name, "components", comp_name, *warning.path),
                warning.message,
                warning.hint,
                service=name,
                component=comp_name,
                **warning.about,
            )
