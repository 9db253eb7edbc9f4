"""What the planner asks a driver for: the steps of one component in one phase.

The planner (``failback.plan``) owns the *order*: the procedures of a failover, a
failback and a switch back are sequences of phases, and within a phase the components
are taken in role order. A driver owns *what* its component does in a phase, and
which observed states make a run unsafe for it (``Driver.check_plan``). Phases a
driver does not take part in give no step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from failback.model.observed import ServiceState


class Phase(StrEnum):
    """One moment of a procedure. The planner sequences them; drivers fill them in."""

    KEEP_FENCED = "keep-fenced"
    """A returning site stays unreachable for clients until it has been resynced."""
    PREFLIGHT = "preflight"
    """Gate: the site is what the plan assumes (role, same cluster, credentials)."""
    CAPTURE = "capture"
    """Read what the returning site committed after the fork, before a resync erases it."""
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


class RunKind(StrEnum):
    """The run a plan is for; a driver's steps may differ between them."""

    FAILOVER = "failover"
    FAILBACK = "failback"
    SWITCH_BACK = "switch-back"
    """The way back from a failback's observation window, inside the failback's run."""
    FENCE = "fence"
    """The monitor fences a stale primary (``from_site``) off its clients; the service
    stays at ``to_site``. Never undone towards the stale primary."""


@dataclass(frozen=True)
class PlanRequest:
    """One component, one phase: everything a driver needs to build its steps.

    ``from_site`` loses the role and ``to_site`` gains it, in every kind of run (in a
    failback, ``to_site`` is the primary site the service returns to).
    """

    phase: Phase
    kind: RunKind
    component: str
    settings: Any
    from_site: str
    to_site: str
    planned: bool = True
    """A zero-loss switch with both sites alive (False: the old site failed, or is
    treated as failed)."""
    first: bool = False
    """The first component of the phase (STOP_WRITES: it marks when writes stop)."""
    last: bool = False
    """The last component of the phase (ROUTE: it marks when writes resume)."""
    measure: bool = False
    """The procedure measures this phase: ROUTE the write-unavailability (on the last
    component), VERIFY the time to recovery of an unplanned failover."""
    point_of_no_return: bool = False
    """PROMOTE: once applied, a failure no longer rolls back (the run stops for a person)."""
    endpoint: str | None = None
    """host:port clients write through (VERIFY writes there)."""
    percent: int = 100
    """SHIFT: the share of the tier's traffic sent to ``to_site``."""
    bake_s: float = 0.0
    """SHIFT: how long the tier must stay healthy at that share (when ``gated``)."""
    gated: bool = False
    """SHIFT: each traffic step is followed by a gate that judges it."""


@dataclass(frozen=True)
class PlanCheck:
    """What a driver judges before a plan is made (``Driver.check_plan``): the run
    asked for, and the service as observed. Pure: nothing is changed."""

    kind: RunKind
    component: str
    settings: Any
    service: Any
    """The service's validated settings (its policy, its components)."""
    state: ServiceState
    from_site: str
    to_site: str
    planned: bool = False
    force: bool = False
    accept_data_loss: bool = False
