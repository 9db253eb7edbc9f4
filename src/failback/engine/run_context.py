"""The context a step runs in (``RunContext``, the engine's ``StepContext``) and the
lookup of a step's code by its action name.

Actions are ``failback.drivers.base.Action`` subclasses: the drivers' (listed in the
catalog) and the engine's own gates (``failback.engine.gates``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from failback.drivers.base import AbortRequested, Action
from failback.engine.progress import NullReporter, Reporter
from failback.errors import StepFailed
from failback.hosts import Host, HostSet
from failback.model.plan import StepSpec
from failback.observe.checks import CheckResult, run_check
from failback.store import Journal

if TYPE_CHECKING:
    from failback.config import Service, Topology


@dataclass
class RunContext:
    """Everything a step may use: the topology, its machines, the journal, run values."""

    run_id: int
    topology: Topology
    service_name: str
    service: Service
    hosts: HostSet
    journal: Journal
    reporter: Reporter = field(default_factory=NullReporter)
    values: dict[str, Any] = field(default_factory=dict)
    current_step: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def abort_requested(self) -> bool:
        """True once ``failback abort`` asked this run to stop (read fresh: another process
        writes it)."""
        return bool(self.journal.run_value(self.run_id, "abort_requested"))

    def writes_stopped(self, site: str) -> None:
        """The first router stops sending writes to ``site``: the write-unavailability
        starts. Journaled before the router acts, so a crash right after still leaves it
        on record for the resumed run."""
        self.remember(f"writes_stopped_at.{site}", time.time())

    def writes_resumed(self, spec: StepSpec, at: float, *, interrupted: bool = False) -> None:
        """The last router sends writes to ``spec.site`` again: record how long writes were
        unavailable since ``params.from`` stopped taking them (when the step measures it)."""
        stopped = self.values.get(f"writes_stopped_at.{spec.params.get('from')}")
        if not (spec.params.get("measure_unavailability") and stopped):
            return
        note = (
            f"from the first router refusing or holding writes at {spec.params.get('from')} to"
            f" the last one sending them to {spec.site}"
        )
        if interrupted:
            note += " (upper bound: the run was interrupted)"
        name = str(spec.params.get("measure_as", "write_unavailability_s"))
        self.measure(name, at - float(stopped), "s", note=note)
        self.remember(f"writes_resumed_at.{spec.site}", at)

    def writes_restored(self, spec: StepSpec, at: float) -> None:
        """A rollback sends writes back to ``spec.site``, where this run had stopped them:
        clients could not write from then until now. Recorded by the undo of the step that
        marked the start (``stop_writes``), which is undone last; once, even when an
        interrupted undo runs again."""
        site = spec.site or ""
        stopped = self.values.get(f"writes_stopped_at.{site}")
        if not (spec.params.get("stop_writes") and stopped) or (
            f"writes_restored_at.{site}" in self.values
        ):
            return
        self.measure(
            "write_unavailability_s",
            at - float(stopped),
            "s",
            note=f"rollback: from the first router refusing or holding writes at {site} to"
            f" the last one sending them back to {site}",
        )
        self.remember(f"writes_restored_at.{site}", at)

    def writes_resume_unrecorded(self, site: str) -> bool:
        return f"writes_resumed_at.{site}" not in self.values

    def event(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.journal.add_event(
            kind,
            message,
            run_id=self.run_id,
            service=self.service_name,
            step_id=self.current_step,
            data=data,
        )

    def run_checks(self, check_type: str, site: str) -> list[CheckResult]:
        return [
            run_check(check, self.service, self.hosts.local(), site)
            for check in self.service.checks
            if check.type == check_type and check.site in (None, site)
        ]

    def host_for(self, component: str | None, site: str | None) -> Host:
        """The machine ``component`` runs on at ``site`` (``local`` for the engine's own
        steps, which belong to no component)."""
        if component is None or site is None:
            return self.hosts.local()
        return self.hosts.for_component(self.service.component(component), site)

    def warm_up(self, steps: list[StepSpec]) -> None:
        """Connect (in the background) to every machine ``steps`` act on."""
        names = [
            self.hosts.name_for(self.service.components[s.component], s.site)
            for s in steps
            if s.component in self.service.components and s.site is not None
        ]
        self.hosts.warm_up(names)

    def run_started_at(self) -> float:
        return self.journal.get_run(self.run_id).created_at

    def service_facts(self) -> dict[str, Any]:
        return self.journal.service_state(self.service_name) or {}

    def set_run_status(self, status: str, hint: str | None = None) -> None:
        """Show a run-level state while a step works (e.g. ``observing``)."""
        self.journal.set_run_status(self.run_id, status, hint=hint)

    def mark_in_sync(self, site: str) -> None:
        """``site`` was resynced and streams from the primary: it no longer needs a resync,
        even if this run is later rolled back (a failover to it is then safe again)."""
        if self.journal.mark_in_sync(self.service_name, site):
            self.log(f"{site} is in sync again: it no longer needs a resync")

    def keep_diverged(self, capture: dict[str, Any]) -> None:
        self.journal.save_diverged(self.run_id, capture)

    def ask_approval(self, step_id: str, question: str) -> None:
        if not self.journal.is_approved(self.run_id, step_id):
            raise WaitingForApproval(step_id, question)

    def remember(self, key: str, value: Any) -> None:
        """Keep a value for later steps, durably (it survives a crash and resume)."""
        self.values[key] = value
        self.journal.set_value(self.run_id, key, value)

    def measure(
        self, name: str, value: float | None, unit: str | None = None, note: str | None = None
    ) -> None:
        """Record a measurement for the run's report."""
        self.journal.add_measurement(
            self.run_id, name, value, unit, step_id=self.current_step, note=note
        )

    def log(self, message: str, **data: Any) -> None:
        self.journal.add_event(
            "log",
            message,
            run_id=self.run_id,
            service=self.service_name,
            step_id=self.current_step,
            data=data or None,
        )
        self.reporter.log(message)

    def progress(self, message: str, fraction: float | None = None) -> None:
        self.reporter.progress(self.current_step or "", message, fraction)

    def wait_until(
        self,
        predicate: Callable[[], tuple[bool, str]],
        *,
        timeout: float,
        interval: float = 0.5,
        what: str,
    ) -> str:
        """Poll ``predicate`` until it says done; show its message as progress.

        Raises StepFailed with the last message when ``timeout`` passes.
        """
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        while True:
            if self.abort_requested():
                raise AbortRequested("aborted by request")
            done, message = predicate()
            elapsed = time.monotonic() - started
            self.progress(message, min(elapsed / timeout, 1.0) if timeout else None)
            if done:
                return message
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{what}: not reached within {timeout:g}s ({message})",
                    hint="the run stopped here; fix the cause, then `failback resume`",
                )
            time.sleep(interval)


class WaitingForApproval(Exception):
    """Raised by an approval gate that has not been approved yet."""

    def __init__(self, step_id: str, question: str) -> None:
        super().__init__(question)
        self.step_id = step_id
        self.question = question


class RevertRequested(Exception):
    """Raised by a step (the observation window) to switch the service back.

    The executor appends the steps that switch back (the step's ``params.revert``
    names their builder) and runs them; the run then ends ``rolled-back``.
    """

    def __init__(self, reason: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params or {}
        """Added to the step's params for the builder of the way back (e.g. how to switch
        back: ``{"switch_back": "failover"}`` when the new primary is dead)."""


__all__ = ["AbortRequested", "Action", "RevertRequested", "RunContext", "WaitingForApproval"]
