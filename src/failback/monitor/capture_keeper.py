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

KEEP_EVERY_S = 1.0
"""How often the slots follow the standby: the older the slot, the more WAL a capture
decodes again (its result is filtered at the fork, so never less exact)."""


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
    _problem: str | None = None

    def round(self, now: float | None = None) -> dict[str, Any] | None:
        """Keep the capture once (blocking: SQL on the primary); None when not wanted."""
        target = self.target
        if target is None:
            return None
        primary, standby = target
        settings = self.service.components[self.db]
        try:
            kept = driver_of(settings).keep_capture(settings, primary, standby)
        except Exception as exc:  # the primary is away: the probes and the reconcile judge it
            text = str(getattr(exc, "message", "") or exc).strip().splitlines()
            kept = {"site": primary, "problem": text[0] if text else type(exc).__name__}
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
