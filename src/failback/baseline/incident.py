"""The ``after_incident`` mark of a service: its next failback carries the clean room.

A person marks a service after a security incident at its primary site (``failback
incident mark``, ``POST /api/v1/services/{service}/incident``); the planner then adds the
``clean_room`` gate to the service's failback, before anything flows back to that site.
The mark is kept in the journal's service state, beside the automatic-failback switch,
and is cleared by the last step of a failback that passed the gate and succeeded, or by
a person (``failback incident clear``).
"""

from __future__ import annotations

import time
from typing import Any

from failback.config import Topology
from failback.store import Journal

__all__ = ["INCIDENT_KEY", "clear_mark", "incident_mark", "set_mark"]

INCIDENT_KEY = "after_incident"
"""service_state key of the mark: ``{"reason", "by", "at"}``, or absent/None."""


def incident_mark(recorded: dict[str, Any] | None) -> dict[str, Any] | None:
    """The mark in a service's recorded state, or None."""
    mark = (recorded or {}).get(INCIDENT_KEY)
    return dict(mark) if isinstance(mark, dict) else None


def set_mark(
    journal: Journal, topology: Topology, service_name: str, *, reason: str, by: str
) -> dict[str, Any]:
    """Mark the service; returns the mark. Marking again replaces the reason."""
    service = topology.service(service_name)
    mark = {"reason": reason, "by": by, "at": time.time()}
    # never rewrites the active site (a run may record a new one meanwhile)
    journal.update_service_data(service_name, service.primary_site, **{INCIDENT_KEY: mark})
    journal.add_event(
        "incident.marked",
        f"{service_name} marked after_incident by {by}" + (f": {reason}" if reason else "")
        + f"; its next failback carries the clean_room gate at {service.primary_site}",
        service=service_name,
        data=mark,
    )  # fmt: skip
    return mark


def clear_mark(
    journal: Journal, service_name: str, primary_site: str, *, by: str, why: str
) -> dict[str, Any] | None:
    """Remove the mark; returns the mark that was there (None: there was none)."""
    mark = incident_mark(journal.service_state(service_name))
    if mark is None:
        return None
    journal.update_service_data(service_name, primary_site, **{INCIDENT_KEY: None})
    journal.add_event(
        "incident.cleared",
        f"{service_name}: after_incident mark cleared by {by} ({why})",
        service=service_name,
        data={"was": mark, "by": by},
    )
    return mark
