"""Keep what reads an unplanned failover's lost commits ready on the primary.

A database that can capture diverged transactions (``Capability.DIVERGED_CAPTURE``)
needs the monitor to keep something on its primary: for PostgreSQL, logical slots moved
forward to what the standby replayed (``drivers/postgres/capture_slots.py``). Without
the monitor nothing moves them, the primary keeps WAL for them up to its own limit, and
a capture after a failover says it cannot be exact (the failback then asks a person).

Its own loop, never the reconcile's: a primary that stops answering must not hold the
failover decision up by a connect timeout. Only an acting monitor (the leader) keeps
them, and only while no run holds the service: a run changes which site is primary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from failback.config import Service
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import components_with_role, driver_of, has_capability
from failback.drivers.kept import Kept, keeping

KEEP_EVERY_S = 1.0
"""How often the slots follow the standby: the older the slot, the more WAL a capture
decodes again (its result is filtered at the fork, so never less exact)."""

SHARE_WITHIN_S = KEEP_EVERY_S
"""How recent a round another service's keeper made on the same primary must be for this
keeper to use it instead of its own (the monitor's ``Kept``): the slots then follow the
standby at most this much later, and a primary many services name gets about one
round per ``KEEP_EVERY_S``, not one per service."""


def capture_database(service: Service) -> str | None:
    """The service's database that can capture diverged transactions, if any."""
    return next(
        (
            name
            for name, settings in components_with_role(service, Role.DATABASE)
            if has_capability(settings, Capability.DIVERGED_CAPTURE)
        ),
        None,
    )


@dataclass
class CaptureKeeper:
    """One service's capture: kept on ``target`` (primary, standby) when the reconcile
    sets one; what the last round found is in ``last`` (the monitor document shows it)."""

    service_name: str
    service: Service
    db: str
    emit: Callable[[str, str, dict[str, Any]], None]
    target: tuple[str, str] | None = None
    last: dict[str, Any] = field(default_factory=dict)
    kept: Kept | None = None
    """The monitor's: the keepers of services that name the same primary share one round
    (``SHARE_WITHIN_S``); None: every round is this keeper's own."""
    _problem: str | None = None

    def round(self, now: float | None = None) -> dict[str, Any] | None:
        """Keep the capture once (blocking: SQL on the primary, unless another keeper's
        round on it is recent); None when not wanted."""
        target = self.target
        if target is None:
            return None
        primary, standby = target
        settings = self.service.components[self.db]
        try:
            with keeping(self.kept, share_within=SHARE_WITHIN_S):
                kept = driver_of(settings).keep_capture(settings, primary, standby)
        except Exception as exc:  # the primary is away: the probes and the reconcile judge it
            text = str(getattr(exc, "message", "") or exc).strip().splitlines()
            kept = {"site": primary, "problem": text[0] if text else type(exc).__name__}
        return self._done(kept, primary, now)

    def round_at_hand(self, now: float | None = None) -> dict[str, Any] | None:
        """The round from another keeper's recent one on the same primary (no I/O, no
        waiting: the event loop calls it), or None: ``round`` must run (in a thread)."""
        target = self.target
        if target is None or self.kept is None:
            return None
        primary, standby = target
        settings = self.service.components[self.db]
        try:
            with keeping(self.kept, share_within=SHARE_WITHIN_S):
                kept = driver_of(settings).keep_capture_at_hand(settings, primary, standby)
        except Exception:  # the round itself says what is wrong
            return None
        return None if kept is None else self._done(kept, primary, now)

    def _done(self, kept: dict[str, Any], primary: str, now: float | None) -> dict[str, Any]:
        kept["at"] = now if now is not None else time.time()
        self.last = kept
        self._report(kept.get("problem"), primary)
        return kept

    def _report(self, problem: str | None, site: str) -> None:
        """One event when a capture becomes impossible, and one when it is possible
        again: not one a second."""
        if problem == self._problem:
            return
        was, self._problem = self._problem, problem
        if problem is not None:
            self.emit(
                "capture.unavailable",
                f"{self.service_name}: diverged transactions could not be captured after a "
                f"failover from {site}: {problem}",
                {"site": site, "problem": problem},
            )
        elif was is not None:
            self.emit(
                "capture.ready",
                f"{self.service_name}: diverged transactions can be captured at {site} again",
                {"site": site},
            )
