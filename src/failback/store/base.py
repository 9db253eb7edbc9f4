"""The store interface: what the engine, the monitor and the interfaces may ask of the
place where runs and service state are kept. One Protocol per concern, plus the records.

This is the shape of Patroni's DCS interface (``patroni/dcs/__init__.py``): callers
name the interface, each backend is one package that implements all of it in one object
(``Store``). SQLite in the state directory (``store/sqlite/``) is the embedded default;
an etcd backend (a control plane shared by several machines) is meant to be a second
package beside it, with no change to the callers.

Atomicity is part of the contract, not a detail of a backend: every method that writes
is durable as a whole when it returns, or not at all (promise 3 of the design: a run
survives the death of the process that runs it). The methods that read, decide and
write (a status transition, a lock, a read-modify-write of a service's data) do it as
one step no other writer can interleave with; their docstrings say so.

Nothing here is given to a driver: a step gets a ``StepContext`` (drivers/base.py),
which writes through the engine, never to the store itself.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass
class RunRecord:
    """One run as stored: what was planned, for which topology, and where it stands."""

    id: int
    service: str
    kind: str
    status: str
    created_at: float
    updated_at: float
    finished_at: float | None
    plan: dict[str, Any]
    topology_path: str
    topology_text: str
    options: dict[str, Any]
    values: dict[str, Any]
    error: str | None
    hint: str | None
    pid: int | None
    report: dict[str, Any] | None


@dataclass
class StepRecord:
    """One step of a run as stored: its forward status and, once undone, its undo status."""

    run_id: int
    idx: int
    step_id: str
    status: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    undo_status: str | None = None


class RunStore(Protocol):
    """Runs and everything a run owns: its steps, values, measurements, approvals, the
    service lock it holds, its rollback bookkeeping.

    They are one concern because the writes that matter span them: creating a run takes
    the lock and writes its steps; turning a run backward fails a step and changes the
    status; a switch back appends steps to the plan. Each of those is one transaction.
    """

    def create_run(
        self,
        *,
        service: str,
        kind: str,
        plan: dict[str, Any],
        topology_path: str,
        topology_text: str,
        options: dict[str, Any],
        lock: str | None = None,
    ) -> int:
        """Create a run (status ``pending``), take the service's lock and write its
        pending steps, atomically; returns the run id.

        Raises StateError naming the run holding the lock: two runs can never act on
        the same service at once, even when two processes ask at the same instant.
        ``lock`` names another lock than the service's (``model/locks.py``: a drill
        holds its own, so that it never keeps a failover from starting).
        """
        ...

    def get_run(self, run_id: int) -> RunRecord:
        """The run, or StateError (with the range of known ids as a hint) when there is
        none; an id beyond 64 bits names no run (never an overflow)."""
        ...

    def list_runs(
        self,
        *,
        service: str | None = None,
        limit: int = 50,
        kinds: Collection[str] | None = None,
    ) -> list[RunRecord]:
        """The newest runs first (``failback runs``, the API, the monitor's history);
        ``kinds`` keeps only runs of those kinds (the monitor's policies count failovers
        and failbacks, not the fence runs in between)."""
        ...

    def set_run_status(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        hint: str | None = None,
        finished: bool = False,
        pid: int | None = None,
    ) -> None:
        """Move a run to ``status``. The current status is read and the transition
        checked against the run state machine (model/states.py) in the same
        transaction as the write: an illegal move raises StateError and changes nothing.
        """
        ...

    def set_value(self, run_id: int, key: str, value: Any) -> None:
        """Keep a value a step computed for later steps (e.g. the final LSN); one
        read-modify-write of the run's values, so other keys are never lost."""
        ...

    def run_value(self, run_id: int, key: str) -> Any:
        """One run value, read alone: polled while a run executes (abort requests), so
        it must not load the plan and the topology snapshot each time."""
        ...

    def save_report(self, run_id: int, report: dict[str, Any]) -> None:
        """Keep the run's final report beside it."""
        ...

    def save_diverged(self, run_id: int, capture: dict[str, Any]) -> None:
        """Keep what a failback captured of a returning site's diverged commits (every
        row): apart from the run's values, which every step rewrites."""
        ...

    def diverged(self, run_id: int) -> dict[str, Any] | None:
        """The capture ``save_diverged`` kept for ``run_id``, if any."""
        ...

    def replace_topology(self, run_id: int, path: str, text: str) -> None:
        """Continue a run with an edited topology file (``resume --reload``)."""
        ...

    def release_lock(self, service: str, run_id: int) -> None:
        """Free the service, only if ``run_id`` is the run holding it."""
        ...

    def lock_holder(self, service: str) -> int | None:
        """The run holding the service's lock, if any."""
        ...

    def steps(self, run_id: int) -> list[StepRecord]:
        """The run's steps in plan order."""
        ...

    def update_step(
        self,
        run_id: int,
        idx: int,
        *,
        status: str | None = None,
        started: bool = False,
        finished: bool = False,
        attempt: bool = False,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        undo_status: str | None = None,
    ) -> None:
        """Record a step's progress (journaled before and after each action); the step
        and the run's ``updated_at`` change in one transaction."""
        ...

    def begin_rollback(
        self,
        run_id: int,
        *,
        reason: str,
        upto: int,
        ending: str,
        failed_idx: int | None = None,
        hint: str | None = None,
    ) -> None:
        """Turn a run backward, durably, before its first undo runs: the failed step
        (if any), the status ``rolling-back`` (checked against the state machine) and the
        ``rollback`` value (why, from which step down, how it ends) in one transaction.
        A crash after it finds a run that can only continue undoing."""
        ...

    def record_revert(
        self, run_id: int, idx: int, reason: str, steps: list[dict[str, Any]]
    ) -> None:
        """Decide a switch back in one transaction: the step that decided it, the reason,
        the abort request consumed, and the steps appended to carry it out. A crash finds
        no decision or the whole of it."""
        ...

    def add_measurement(
        self,
        run_id: int,
        name: str,
        value: float | None,
        unit: str | None = None,
        *,
        step_id: str | None = None,
        note: str | None = None,
    ) -> None:
        """Keep one measured figure (the report is built from these, not estimated)."""
        ...

    def measurements(self, run_id: int) -> list[dict[str, Any]]:
        """The run's measurements in the order they were taken."""
        ...

    def approve(self, run_id: int, step_id: str, approved_by: str) -> None:
        """Approve a gate; approving twice keeps the first approval."""
        ...

    def is_approved(self, run_id: int, step_id: str) -> bool:
        """Whether a person approved this gate of this run."""
        ...


class EventStore(Protocol):
    """The event log: what happened, in order, for people and for the monitor, which
    forwards every event to the log and the webhooks."""

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        run_id: int | None = None,
        service: str | None = None,
        step_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Append one event (its id orders it after every event already stored)."""
        ...

    def events(self, *, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` events (of one run, or all), oldest first."""
        ...

    def events_since(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        """Events with an id above ``after_id``, oldest first: a reader that keeps the
        last id it saw misses none and sees none twice."""
        ...

    def last_event_id(self) -> int:
        """The id of the newest event (0 when none): where a new reader starts."""
        ...


class ServiceStateStore(Protocol):
    """Where each service runs now and the facts kept between runs (sites needing a
    resync, the synchronous-replication record, the monitor's own document).

    Runs and the monitor write it from different processes: every write is one
    read-modify-write no other writer can interleave with, so a writer of some keys
    never puts back a stale value of another key.
    """

    def service_state(self, service: str) -> dict[str, Any] | None:
        """The service's data with ``active_site`` and ``updated_at``; None if never set."""
        ...

    def set_service_state(self, service: str, active_site: str, **data: Any) -> None:
        """Record where the service runs now (a run's outcome) and set ``data``'s keys."""
        ...

    def update_service_data(self, service: str, default_site: str, **data: Any) -> None:
        """Set ``data``'s keys without touching ``active_site`` (the monitor's writes: a
        long-running writer must never put back an active site it read before a run
        recorded a new one). ``default_site`` is used only when no record exists yet."""
        ...

    def mark_in_sync(self, service: str, site: str) -> bool:
        """Take ``site`` off the sites needing a resync; True when it was on the list."""
        ...


class HealthStore(Protocol):
    """The monitor's latest probe results, so another process (``failback status``,
    the API) shows them."""

    def save_health(self, service: str, probes: dict[str, dict[str, Any]]) -> None:
        """Replace all of the service's probe records at once: a reader sees the old
        set or the new one, never a mix."""
        ...

    def health(self, service: str) -> dict[str, dict[str, Any]]:
        """Probe name -> its record, with ``saved_at``."""
        ...


HISTORY_BUCKET_S = 10
"""The history keeps one sample per component and site per this many seconds."""
HISTORY_KEEP_S = 24 * 3600
"""And forgets samples older than this (24 h: 8640 rows per component and site)."""


class HistoryStore(Protocol):
    """A bounded, downsampled history of each component's health and replication lag,
    for the console's charts: kept by the machine that observes (the etcd backend keeps
    it in the local SQLite file too, see store/etcd/health.py)."""

    def record_history(
        self, service: str, samples: Sequence[dict[str, Any]], at: float | None = None
    ) -> None:
        """Merge ``samples`` (``component``, ``site``, ``healthy``, ``role``,
        ``lag_bytes``, ``lag_seconds``) into the history at ``at`` (now by default); the
        backend keeps the worst sample of each interval and forgets old ones."""
        ...

    def history(self, service: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The service's samples from ``since`` on, oldest first: ``component, site, at,
        last_at, healthy, role, lag_bytes, lag_seconds, samples``."""
        ...


@runtime_checkable
class Store(RunStore, EventStore, ServiceStateStore, HealthStore, HistoryStore, Protocol):
    """One backend, all concerns: the object callers open for a state directory."""

    state_dir: Path
    """The state directory (run process locks live beside the store)."""

    def fence_writes(self, fence: Sequence[Any]) -> None:
        """Make every later write of this object conditional on ``fence`` (a control
        plane leader's key and lease): a write that finds it broken raises
        ``LeadershipLost`` and changes nothing. A backend of one machine has no leader to
        fence with and ignores it (SQLite)."""
        ...

    def close(self) -> None:
        """Release the backend's connection; the object is unusable afterwards."""
        ...
