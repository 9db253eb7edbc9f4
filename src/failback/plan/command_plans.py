"""Failover and failback plans for components driven by the command driver.

Order is what keeps data safe: fence the site losing the role, then promote the
site gaining it, then open it to traffic; verify last. Pure functions: same inputs,
same plan.
"""

from __future__ import annotations

from typing import Any

from failback.plan.model import StepSpec


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
    steps: list[StepSpec] = []
    components = command_components(service)
    if fence_old:
        for name, comp in components:
            if _has(comp, from_site, "fence"):
                steps.append(
                    StepSpec(
                        id=f"fence-{name}-{from_site}",
                        title=f"fence {name} at {from_site}",
                        action="command.run",
                        component=name,
                        site=from_site,
                        params={"action": "fence"},
                        why="the site losing the role must take no writes before another one is"
                        " promoted",
                    )
                )
    for name, comp in components:
        if _has(comp, to_site, "promote"):
            steps.append(
                StepSpec(
                    id=f"promote-{name}-{to_site}",
                    title=f"promote {name} at {to_site}",
                    action="command.run",
                    component=name,
                    site=to_site,
                    params={"action": "promote"},
                    point_of_no_return=promote_is_point_of_no_return,
                )
            )
    for name, comp in components:
        if _has(comp, to_site, "unfence"):
            steps.append(
                StepSpec(
                    id=f"unfence-{name}-{to_site}",
                    title=f"open {name} at {to_site} to traffic",
                    action="command.run",
                    component=name,
                    site=to_site,
                    params={"action": "unfence"},
                )
            )
    for name, comp in components:
        if _has(comp, from_site, "demote"):
            steps.append(
                StepSpec(
                    id=f"demote-{name}-{from_site}",
                    title=f"demote {name} at {from_site}",
                    action="command.run",
                    component=name,
                    site=from_site,
                    params={"action": "demote"},
                )
            )
    for name, comp in components:
        if _has(comp, to_site, "verify"):
            steps.append(
                StepSpec(
                    id=f"verify-{name}-{to_site}",
                    title=f"verify {name} at {to_site}",
                    action="command.run",
                    component=name,
                    site=to_site,
                    params={"action": "verify"},
                )
            )
    return steps


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
