"""Runs the monitor starts (or resumes) execute in their own thread, through the starter.

Same path as the CLI: ``make_plan`` observes and plans, ``create_run`` records the run
and takes the service lock (so the monitor can never run two at once, nor race a
person), the executor runs it. A fence of a stale primary is planned by the monitor
from what it just observed (``failback.plan.fence``) and handed over as ``plan``. Each
worker has its own journal connection (SQLite connections belong to one thread). The
outcome becomes an event; a refusal is kept for the monitor to report (it retries,
level-triggered).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from failback.config import Topology
from failback.engine.executor import Executor, RunOutcome, SharedHosts
from failback.engine.starter import create_run, make_plan, plan_from_state
from failback.errors import FailbackError, LeadershipLost
from failback.hosts import HostSet
from failback.model.observed import ServiceState
from failback.model.plan import Plan
from failback.monitor.leadership import Leadership
from failback.plan.artefact import PlanOptions
from failback.store import Journal, open_journal

OUTCOME_EVENTS = {
    "succeeded": "finished",
    "rolled-back": "rolled_back",
    "waiting-approval": "waiting_approval",
    "failed": "failed",
}
"""The monitor's own outcome events. An abort has none: the engine journals
``KIND.aborted`` itself, and the monitor forwards it like every journal event."""

ABORT_WAIT_S = 600.0
"""How long an abort waits for the process executing the run to act on it."""


class JournalPerThread:
    """One Journal (SQLite connection) per thread, opened on first use."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._local = threading.local()

    def get(self) -> Journal:
        journal = getattr(self._local, "journal", None)
        if journal is None:
            journal = open_journal(self.state_dir)
            self._local.journal = journal
        return journal


class RunWorker:
    """Start (``kind``) or continue (``run_id``) one run in a daemon thread.

    ``abort=True`` aborts ``run_id`` instead: the executor undoes it, or asks the
    process executing it to stop at its next step or gate poll and waits for the end.
    ``plan``: run this plan instead of planning ``kind`` afresh. ``after`` is called
    with the outcome once the executor returns (in this thread, with its journal).
    ``hosts``: connections the monitor keeps open for its runs, used for observing and
    for the run's steps (never closed here). ``observed``: the state the monitor's probes just saw,
    planned from instead of observing again; a plan refused on it is made again from a
    fresh observation (the probes may lag what a fresh look shows). ``seat``: this
    node's leadership in a control plane: the executor proves it before each step, and
    the run's journal writes are fenced by its lease (a deposed leader writes nothing).
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        topology: Topology,
        service: str,
        kind: str,
        run_id: int | None = None,
        prepare: Callable[[], None] | None = None,
        abort: bool = False,
        plan: Plan | None = None,
        after: Callable[[Journal, RunOutcome], None] | None = None,
        hosts: HostSet | None = None,
        observed: ServiceState | None = None,
        seat: Leadership | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.topology = topology
        self.service = service
        self.kind = kind
        self.run_id = run_id
        self.prepare = prepare
        self.abort = abort
        self.plan = plan
        self.after = after
        self.hosts = hosts
        self.observed = observed
        self.seat = seat
        self.planned_from: str | None = None
        self.refusal: str | None = None
        self.outcome: RunOutcome | None = None
        self.thread = threading.Thread(target=self._main, name=f"run-{service}-{kind}", daemon=True)

    def start(self) -> RunWorker:
        self.thread.start()
        return self

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _main(self) -> None:
        journal = open_journal(self.state_dir)
        shared = None if self.hosts is None else SharedHosts(self.topology, self.hosts)
        guard = None if self.seat is None else self.seat.prove
        executor = Executor(journal, shared_hosts=shared, guard=guard)
        try:
            if self.seat is not None:
                fence = self.seat.write_fence()
                if fence is None:
                    raise LeadershipLost(
                        f"{self.kind} of {self.service} not started: not the leader"
                    )
                journal.fence_writes(fence)
            if self.abort and self.run_id is not None:
                # the engine journals the outcome (``KIND.aborted``); the process that
                # executes the run, if any, reports it as well
                self.outcome = executor.abort(self.run_id, wait_s=ABORT_WAIT_S)
                return
            if self.run_id is None:
                if self.prepare is not None:
                    self.prepare()
                options: dict[str, Any] = {}
                if self.kind == "failback":
                    # the monitor watched the stability window already: the run's gate
                    # re-checks the primary site once instead of waiting a second window
                    options["stability_window_s"] = 0.0
                plan = self.plan or self._make_plan(journal, options)
                self.run_id = create_run(executor, self.topology, plan, by="monitor")
                data = {"from": plan.from_site, "to": plan.to_site, "by": "monitor"}
                if self.planned_from is not None:
                    data["planned_from"] = self.planned_from
                journal.add_event(
                    f"{self.kind}.started",
                    f"{self.kind} of {self.service} from {plan.from_site} to {plan.to_site}"
                    f" started by the monitor (run {self.run_id})",
                    run_id=self.run_id,
                    service=self.service,
                    data=data,
                )
            self.outcome = executor.execute(self.run_id)
            if self.outcome.deposed and self.seat is not None:
                # the journal is fenced by the lost lease: the refusal goes to this
                # monitor's own log (and to the journal if it still takes it)
                self.seat.report(
                    "run.deposed",
                    f"{self.kind} of {self.service} (run {self.run_id}) left to the next "
                    f"leader: {self.outcome.error}",
                )
            self._report(journal, self.outcome)
            if self.after is not None:
                self.after(journal, self.outcome)
        except FailbackError as exc:
            self.refusal = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        except Exception as exc:  # the monitor must outlive a broken run
            self.refusal = f"{type(exc).__name__}: {exc}"
        finally:
            journal.close()

    def _make_plan(self, journal: Journal, options: dict[str, Any]) -> Plan:
        """From the probes' state when given and it allows the run; else observe now."""
        if self.observed is not None:
            try:
                plan = plan_from_state(
                    self.kind, self.service, self.topology, self.observed, PlanOptions(**options)
                )
                self.planned_from = "probes"
                return plan
            except FailbackError:
                pass  # the probes may lag: a fresh observation decides
        self.planned_from = "observation"
        return make_plan(
            self.kind, self.service, self.topology, journal, hosts=self.hosts, **options
        )

    def _report(self, journal: Journal, outcome: RunOutcome) -> None:
        if outcome.status not in OUTCOME_EVENTS:
            return
        suffix = OUTCOME_EVENTS[outcome.status]
        message = f"{self.kind} of {self.service} {outcome.status} (run {outcome.run_id})"
        if outcome.status == "waiting-approval":
            message = (
                f"{self.kind} of {self.service} waits for approval: "
                f"`failback approve {outcome.run_id}`"
            )
        elif outcome.error:
            message += f": {outcome.error}"
        journal.add_event(
            f"{self.kind}.{suffix}",
            message,
            run_id=outcome.run_id,
            service=self.service,
            data={"status": outcome.status, "error": outcome.error, "hint": outcome.hint},
        )
