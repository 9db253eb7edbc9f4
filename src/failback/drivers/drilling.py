"""What the drill planner asks a database driver for (``Capability.DRILL``).

A drill proves that a standby could take over, without touching production: the
driver copies the standby, starts the copy where no client and no replication can
reach it, promotes it, writes to it, runs the checks the planner could aim at it, keeps
it for a person to look at, and removes it. The planner (``failback.plan.drill``)
decides *which* declared checks can be aimed at the copy (only those that speak SQL to
the drilled database: anything else would reach production) and passes them here as
data; the driver decides *how* each step is done on its kind of database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DrillCheck:
    """A declared ``sql`` check, to be run against the copy instead of the site."""

    name: str
    query: str
    timeout_s: float


@dataclass(frozen=True)
class SkippedCheck:
    """A declared check a drill cannot aim at the copy, and why (shown in the report)."""

    name: str
    type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "reason": self.reason}


@dataclass(frozen=True)
class DrillRequest:
    """One drill of one database component's standby at ``site``."""

    component: str
    settings: Any
    site: str
    """The site whose standby is copied (never the active site)."""
    active_site: str
    """Where production runs: a drill never acts there."""
    keep_for_s: float = 0.0
    """How long the promoted copy stays up for a person to look at it."""
    parent: str | None = None
    """The directory the copy goes in, on the standby's machine (None: the driver's
    default, beside the standby's data)."""
    checks: tuple[DrillCheck, ...] = ()
    skipped: tuple[SkippedCheck, ...] = field(default_factory=tuple)
