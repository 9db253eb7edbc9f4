"""The steps a ``command`` component contributes: the operator's own script per phase.

A component takes part in a phase only where its topology declares the matching
command at the site concerned (``fence`` at the site losing the role, ``promote`` at
the one gaining it...). The planner runs the phases in the order that keeps data safe:
fence the site losing the role, promote the site gaining it, open it to traffic,
demote the old one, verify last.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.planning import Phase, PlanRequest
from failback.model.plan import StepSpec

# phase -> (the command's action, does it act at the site losing the role?, title)
_ACTIONS: dict[Phase, tuple[str, bool, str]] = {
    Phase.RESYNC: ("sync", False, "resync {name} at {site}"),
    Phase.FENCE: ("fence", True, "fence {name} at {site}"),
    Phase.PROMOTE: ("promote", False, "promote {name} at {site}"),
    Phase.UNFENCE: ("unfence", False, "open {name} at {site} to traffic"),
    Phase.DEMOTE: ("demote", True, "demote {name} at {site}"),
    Phase.VERIFY: ("verify", False, "verify {name} at {site}"),
}

_WHY = {
    "fence": "the site losing the role must take no writes before another one is promoted",
}


def _declares(settings: Any, site: str, action: str) -> bool:
    return getattr(settings.sites.get(site), action, None) is not None


def command_steps(request: PlanRequest) -> list[StepSpec]:
    """The component's command for this phase, where one is declared at that site."""
    found = _ACTIONS.get(request.phase)
    if found is None:
        return []
    action, at_old_site, title = found
    site = request.from_site if at_old_site else request.to_site
    name = request.component
    if not _declares(request.settings, site, action):
        return []
    return [
        StepSpec(
            id=f"{action}-{name}-{site}",
            title=title.format(name=name, site=site),
            action="command.run",
            component=name,
            site=site,
            params={"action": action},
            point_of_no_return=action == "promote" and request.point_of_no_return,
            why=_WHY.get(action),
        )
    ]
