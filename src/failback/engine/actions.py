"""Actions: the code behind a plan step's name, and the context a step runs in.

Each action is a class with ``check`` (already done?), ``apply``, ``verify`` and,
where one exists, ``undo``. They must be idempotent: after a crash the engine calls
``check`` to learn whether an interrupted ``apply`` took effect, and re-applies
only when it did not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from failback.engine.journal import Journal
from failback.engine.progress import NullReporter, Reporter
from failback.errors import FailbackError, StepFailed
from failback.hosts import Host
from failback.model.plan import StepSpec

if TYPE_CHECKING:
    from failback.config import Service, Topology


class AbortRequested(Exception):
    """Another process asked (``failback abort``) to stop this run; gates raise it."""


@dataclass
class RunContext:
    """Everything a step may use: the topology, the host, the journal, run values."""

    run_id: int
    topology: Topology
    service_name: str
    service: Service
    host: Host
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

    def set_run_status(self, status: str, hint: str | None = None) -> None:
        """Show a run-level state while a step works (e.g. ``observing``)."""
        self.journal.set_run_status(self.run_id, status, hint=hint)

    def mark_in_sync(self, site: str) -> None:
        """``site`` was resynced and streams from the primary: it no longer needs a resync,
        even if this run is later rolled back (a failover to it is then safe again)."""
        if self.journal.mark_in_sync(self.service_name, site):
            self.log(f"{site} is in sync again: it no longer needs a resync")

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


class Action:
    """Base class of every step implementation."""

    name: ClassVar[str]
    has_undo: bool = False
    can_check: bool = True
    """False when ``check`` cannot tell whether the effect is in place (a command with no
    ``check:``): a step interrupted while applying then waits for a person instead of
    being applied a second time."""

    def __init__(self, spec: StepSpec, ctx: RunContext) -> None:
        self.spec = spec
        self.ctx = ctx

    def check(self) -> bool:
        """True when the step's effect is already in place (nothing to apply)."""
        return False

    def apply(self) -> dict[str, Any] | None:
        """Make the effect happen. Returns output kept in the journal."""
        raise NotImplementedError

    def verify(self) -> None:
        """Raise StepFailed unless the effect is really in place."""

    def undo(self) -> dict[str, Any] | None:
        """Reverse the effect (only called when ``has_undo``)."""
        raise NotImplementedError


ACTIONS: dict[str, type[Action]] = {}


def register(cls: type[Action]) -> type[Action]:
    """Class decorator: make an action available to plans under ``cls.name``."""
    if cls.name in ACTIONS and ACTIONS[cls.name] is not cls:
        raise RuntimeError(f"action {cls.name} registered twice")
    ACTIONS[cls.name] = cls
    return cls


def build_action(spec: StepSpec, ctx: RunContext) -> Action:
    _load_builtin_actions()
    try:
        cls = ACTIONS[spec.action]
    except KeyError as exc:
        raise FailbackError(
            f"step {spec.id}: unknown action {spec.action!r}",
            hint="the plan was written by another version of failback",
        ) from exc
    return cls(spec, ctx)


def _load_builtin_actions() -> None:
    """Import the modules that register actions (kept lazy to avoid import cycles)."""
    import failback.drivers.command.actions
    import failback.drivers.haproxy.actions
    import failback.drivers.pgbouncer.actions
    import failback.drivers.postgres.actions
    import failback.engine.gates  # noqa: F401
