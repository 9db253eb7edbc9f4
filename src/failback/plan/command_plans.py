"""Failover and failback plans for components driven by the command driver.

Order is what keeps data safe: fence the site losing the role, then promote the
site gaining it, then open it to traffic; verify last. Pure functions: same inputs,
same plan.
"""

from __future__ import annotations

from typing import Any

from failback.model.plan import StepSpec


def _has(component: Any, site: str, action: str) -> bool:
    return getattr(component.sites.get(site), action, None) is not None


def command_components(service: Any) -> list[tuple[str, Any]]:
    return [(n, c) for n, c in service.components.items() if c.driver == "command"]


def command_switch_steps(
    service: Any,
    *,
    from_site: str,
    to_site: str,
    fence_old: bool = True,
    promote_is_point_of_no_return: bool = True,
) -> list[StepSpec]:
    """fence(from) -> promote(to) -> unfence(to) -> demote(from) -> verify(to)."""
    phases: list[tuple[str, str, str]] = [
        ("fence", from_site, "fence {name} at {site}"),
        ("promote", to_site, "promote {name} at {site}"),
        ("unfence", to_site, "open {name} at {site} to traffic"),
        ("demote", from_site, "demote {name} at {site}"),
        ("verify", to_site, "verify {name} at {site}"),
    ]
    if not fence_old:
        phases = phases[1:]
    steps: list[StepSpec] = []
    for action, site, title in phases:
        for name, comp in command_components(service):
            if not _has(comp, site, action):
                continue
            steps.append(
                StepSpec(
                    id=f"{action}-{name}-{site}",
                    title=title.format(name=name, site=site),
                    action="command.run",
                    component=name,
                    site=site,
                    params={"action": action},
                    point_of_no_return=action == "promote" and promote_is_point_of_no_return,
                    why=_WHY.get(action),
                )
            )
    return steps


_WHY = {
    "fence": "the site losing the role must take no writes before another one is promoted",
}


def command_sync_steps(service: Any, *, site: str) -> list[StepSpec]:
    """Bring the returning site's data back in sync (its ``sync`` commands)."""
    return [
        StepSpec(
            id=f"sync-{name}-{site}",
            title=f"resync {name} at {site}",
            action="command.run",
            component=name,
            site=site,
            params={"action": "sync"},
        )
        for name, comp in command_components(service)
        if _has(comp, site, "sync")
    ]
