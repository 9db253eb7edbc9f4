"""Cross-checks of ``hosts:`` and the ``runs_on`` references to it.

Run on the raw data (like the site references) so that a typo in a machine name is
reported with its line even when another part of the file has a type error.
"""

from __future__ import annotations

import difflib
from typing import Any, Protocol

from failback.config.hosts import LOCAL
from failback.config.yaml_source import KeyPath
from failback.model.fields import valid_name

__all__ = ["check_host_references"]

_RULE = "use letters, digits, '-', '_' or '.', starting with a letter or digit (max 63)"


class _Report(Protocol):
    def add(self, path: KeyPath, message: str, hint: str | None = None) -> None: ...


def _known(name: str, declared: list[str]) -> str:
    close = difflib.get_close_matches(name, declared, n=1)
    listed = ", ".join(declared)
    return (
        f"did you mean {close[0]!r}? declared hosts: {listed}"
        if close
        else (f"declared hosts: {listed} (add it under hosts:)")
    )


def check_host_references(data: dict[str, Any], report: _Report) -> None:
    """Every ``runs_on`` and ``jump`` names a declared machine; no jump loops."""
    hosts = data.get("hosts")
    hosts = hosts if isinstance(hosts, dict) else {}
    declared = [LOCAL, *(str(n) for n in hosts if n != LOCAL)]
    for name, spec in hosts.items():
        if not valid_name(str(name)):
            report.add(("hosts", name), f"{name!r} is not a valid host name", _RULE)
        if name == LOCAL and isinstance(spec, dict) and spec.get("via", "local") != "local":
            report.add(
                ("hosts", name, "via"),
                "'local' is the machine failback runs on: it cannot be reached by ssh",
                "give the ssh machine another name",
            )
    _check_jumps(hosts, report)

    def check(path: KeyPath, value: object) -> None:
        if isinstance(value, str) and value not in declared:
            report.add(path, f"host {value!r} is not declared", _known(value, declared))

    sites = data.get("sites")
    for site, spec in (sites if isinstance(sites, dict) else {}).items():
        if isinstance(spec, dict):
            check(("sites", site, "runs_on"), spec.get("runs_on"))
    services = data.get("services")
    for service_name, service in (services if isinstance(services, dict) else {}).items():
        components = service.get("components") if isinstance(service, dict) else None
        for comp_name, component in (components if isinstance(components, dict) else {}).items():
            if not isinstance(component, dict):
                continue
            base: KeyPath = ("services", service_name, "components", comp_name, "runs_on")
            runs_on = component.get("runs_on")
            if isinstance(runs_on, dict):
                comp_sites = component.get("sites")
                comp_sites = list(comp_sites) if isinstance(comp_sites, dict) else []
                for site, machine in runs_on.items():
                    if site not in comp_sites:
                        report.add(
                            (*base, site),
                            f"the component has no site {site!r}",
                            f"its sites are: {', '.join(map(str, comp_sites)) or 'none'}",
                        )
                    check((*base, site), machine)
            else:
                check(base, runs_on)


def _check_jumps(hosts: dict[Any, Any], report: _Report) -> None:
    for name, spec in hosts.items():
        if not isinstance(spec, dict) or spec.get("jump") is None:
            continue
        seen = [name]
        current = spec
        while isinstance(current, dict) and current.get("jump") is not None:
            jump = current["jump"]
            target = hosts.get(jump)
            if not isinstance(target, dict) or target.get("via") != "ssh":
                ssh_hosts = [
                    str(n)
                    for n, s in hosts.items()
                    if isinstance(s, dict) and s.get("via") == "ssh" and n != name
                ]
                report.add(
                    ("hosts", name, "jump"),
                    f"jump host {jump!r} is not an ssh host of this topology",
                    f"ssh hosts: {', '.join(ssh_hosts) or 'none'}",
                )
                break
            if jump in seen:
                report.add(
                    ("hosts", name, "jump"),
                    f"jump hosts loop: {' -> '.join(map(str, [*seen, jump]))}",
                    "a chain of jump hosts must end at a host reached directly",
                )
                break
            seen.append(jump)
            current = target
