"""What the planner asks a driver for: the steps of one component in one phase.

The planner (``failback.plan``) owns the *order*: the procedures of a failover, a
failback and a switch back are sequences of phases, and within a phase the components
are taken in role order. A driver owns *what* its component does in a phase. Phases a
driver does not take part in give no step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """One moment of a procedure. The planner sequences them; drivers fill them in."""

    KEEP_FENCED = "keep-fenced"
    """A returning site stays unreachable for clients until it has been resynced."""
    PREFLIGHT = "preflight"
    """Gate: the site is what the plan assumes (role, same cluster, credentials)."""
    RESYNC = "resync"
    """Bring the returning site's data back in line with the active one."""
    CATCHUP = "catchup"
    """Wait until the returning site is close enough behind the active one."""
    CHECKPOINT = "checkpoint"
    """Make the site losing the role quick to stop (before writes stop)."""
    STOP_WRITES = "stop-writes"
    """Pools hold and routers fence the site losing the role: write-unavailability begins."""
    STOP = "stop"
    """The site losing the role stops cleanly and hands over its final position."""
    FENCE = "fence"
    """The site losing the role is made unable to take writes (it may be dead)."""
    REPLAY = "replay"
    """The site gaining the role has everything the other one acknowledged."""
    PROMOTE = "promote"
    """The site gaining the role takes it (the point of no return of a switch)."""
    ROUTE = "route"
    """Routers and pools send writes to the new site: write-unavailability ends."""
    SHIFT = "shift"
    """Stateless tiers' traffic moves between sites by weight, a step at a time."""
    UNFENCE = "unfence"
    """The site gaining the role is opened to traffic."""
    DEMOTE = "demote"
    """The site that lost the role is made passive."""
    REPROTECT = "reprotect"
    """The site that lost the role follows the new one again (a standby)."""
    VERIFY = "verify"
    """Prove the new site serves: a write through the clients' endpoint lands there."""


@dataclass(frozen=True)
class PlanRequest:
    """One component, one phase: everything a driver needs to build its steps."""

    phase: Phase
    kind: str
    """``failover`` | ``failback`` | ``switch-back``: the run being planned."""
    component: str
    settings: Any
    from_site: str
    """The site losing the role in this switch."""
    to_site: str
    """The site gaining it."""
    planned: bool = True
    """A zero-loss switch with both sites alive (False: the old site failed)."""
    first: bool = False
    """The first component of the phase (STOP_WRITES: it marks when writes stop)."""
    last: bool = False
    """The last component of the phase (ROUTE: it measures write-unavailability)."""
    endpoint: str | None = None
    """host:port clients write through (VERIFY writes there)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Phase-specific values (SHIFT: ``percent``, ``bake_s``, ``gated``...)."""
