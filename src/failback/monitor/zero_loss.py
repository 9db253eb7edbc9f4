"""Keep a synchronous service in zero-loss mode when it can be, relaxed when it cannot.

Level-triggered, run on every reconcile of a service with ``policy.synchronous``:

* the standby streams (the primary's walsender for it is ``streaming``, i.e. caught
  up): the primary waits for it (zero-loss mode);
* the standby is declared failed, or has not streamed for the detection budget, and
  the policy is not ``strict``: the primary stops waiting (relaxed), so writes flow;
* otherwise nothing changes.

The journal records ``sync_mode`` *before* relaxing and *after* restoring: if the
monitor dies in between, the record errs on the side of "may lack writes", which is
what the failover planner needs to refuse an unsafe promotion.

What the setting is and how it is read and written is the database driver's
(``Capability.SYNCHRONOUS_REPLICATION``); this module only decides which one it wants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from failback.config import Service
from failback.drivers.base import Capability, Driver, Role
from failback.drivers.catalog import components_with_role, driver_of, has_capability
from failback.observe.probes import HealthView
from failback.store import Journal

STANDBY_CHECK_EVERY_S = 5.0


@dataclass
class ReplicationManager:
    """Per-service memory of the sync reconcile (how long the standby has not streamed)."""

    service_name: str
    service: Service
    db: str
    not_streaming_since: float | None = None
    standby_checked_at: float = 0.0
    written_at: float = 0.0
    """When this keeper last changed the primary's setting: an observation that began
    before then may show the value it replaced."""

    @property
    def driver(self) -> Driver:
        return driver_of(self.service.components[self.db])

    def reconcile(
        self,
        journal: Journal,
        views: dict[str, HealthView],
        active: str,
        recorded: dict[str, Any] | None,
        now: float,
    ) -> dict[str, Any] | None:
        """Apply the wanted mode on the primary; return the new ``sync_mode`` record."""
        policy = self.service.policy
        component = self.service.components[self.db]
        standby = next((s for s in component.sites if s != active), None)
        primary_view = views.get(f"{self.db}@{active}")
        obs = primary_view.observation if primary_view else None
        if standby is None or obs is None or not obs.healthy or obs.role != "primary":
            return None  # nothing to act on: the record keeps the last observed mode
        driver = self.driver
        # as the probe saw it: asking the primary here would wait out a connect timeout
        # on a machine that died since, and hold up this service's failover decision;
        # asked when that observation began before our own last change (it may show the
        # value we replaced, and "zero-loss" must never be recorded on a stale reading)
        seen = obs.data if obs.observed_at > self.written_at else None
        current = driver.synchronous_setting(component, active, observed=seen)
        streaming = driver.standby_streams(obs.data, standby)
        if streaming:
            self.not_streaming_since = None
        elif self.not_streaming_since is None:
            self.not_streaming_since = now
        detection = policy.detection
        budget = float(detection.interval) * int(detection.failure_threshold)
        standby_view = views.get(f"{self.db}@{standby}")
        standby_failed = (standby_view is not None and standby_view.failed) or (
            self.not_streaming_since is not None and now - self.not_streaming_since >= budget
        )
        value = driver.zero_loss_setting(component)
        if streaming or policy.strict:
            wanted, why = value, f"standby {standby} streams and has caught up"
            if not streaming:
                why = f"strict: writes wait for {standby} even though it does not stream"
        elif standby_failed:
            wanted, why = "", f"standby {standby} is unhealthy: writes must keep flowing"
        else:
            wanted, why = current, ""
        previous = recorded or {}
        mode = "sync" if wanted else "relaxed"
        reason = why or ("synchronous standby named" if wanted else "standby not streaming yet")
        record = self._record(mode, active, standby, wanted, reason, now)
        if wanted != current and wanted == "":
            # recorded before the primary stops waiting: a crash in between must leave
            # "may lack writes" on record, never "zero-loss"
            journal.update_service_data(self.service_name, active, sync_mode=record)
            self.written_at = time.time()
            driver.set_synchronous_setting(component, active, "")
        elif wanted != current:
            self.written_at = time.time()
            driver.set_synchronous_setting(component, active, wanted)
        unchanged = (
            previous.get("mode") == mode
            and previous.get("primary") == active
            and previous.get("value") == wanted
        )
        if unchanged:
            self._clear_standby(component, standby, views, now)
            return previous
        journal.update_service_data(self.service_name, active, sync_mode=record)
        if previous.get("mode") != mode and (previous or mode == "sync"):
            label = "zero-loss mode" if mode == "sync" else "asynchronous replication (relaxed)"
            journal.add_event(
                f"sync.{'zero_loss' if mode == 'sync' else 'relaxed'}",
                f"{self.service_name}: {label}: {reason}",
                service=self.service_name,
                data=record,
            )
        return record

    def _record(
        self, mode: str, primary: str, standby: str, value: str, reason: str, now: float
    ) -> dict[str, Any]:
        return {
            "mode": mode,
            "primary": primary,
            "standby": standby,
            "value": value,
            "reason": reason,
            "since": now,
        }

    def _clear_standby(
        self, component: Any, standby: str, views: dict[str, HealthView], now: float
    ) -> None:
        """Every few seconds: the standby must not carry the setting into a promotion."""
        if now - self.standby_checked_at < STANDBY_CHECK_EVERY_S:
            return
        self.standby_checked_at = now
        view = views.get(f"{self.db}@{standby}")
        obs = view.observation if view else None
        if obs is not None and obs.healthy and obs.role == "standby":
            self.driver.clear_synchronous_setting(component, standby)


def synchronous_database(service: Service) -> str | None:
    """The service's database whose driver can switch synchronous replication, if any."""
    return next(
        (
            name
            for name, settings in components_with_role(service, Role.DATABASE)
            if has_capability(settings, Capability.SYNCHRONOUS_REPLICATION)
        ),
        None,
    )


def prepare_target(service: Service, db: str, site: str) -> None:
    """Before an automatic failover: clear the setting on the standby to be promoted."""
    settings = service.components[db]
    driver_of(settings).clear_synchronous_setting(settings, site)
