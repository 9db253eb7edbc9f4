"""One service's reconcile: compare what is observed with what the policy wants, act.

Level-triggered (a Kubernetes controller, not a state machine fed by events): every
tick looks at the latest probe results and the journal, and decides from scratch
(``failback.monitor.decide`` holds the decisions, each with its reason). Events are
edges of that level ("first time seen failed"), remembered in ``episodes`` so that a
person is told once, not every 250 ms; no decision depends on having seen an edge.

Order of business on each tick:

1. read the lock, then the service state (a run records the new active site *before*
   it releases the lock, so this order never pairs a free lock with a stale site);
2. the run holding the service, if any: continue it when it is the monitor's own and
   its process died (in the direction it was going), report a person's interrupted run
   and leave it to them;
3. fence any stale primary, whatever the policy (promise 1), unless a run holds the
   service: runs promote and route, and a failback's new primary is "stale" until its
   last step records it. The fence is itself a short run of kind ``fence``
   (``failback.plan.fence``: the routers' and pools' own steps), journaled like any;
4. flap damping: the primary site failed during a failback or within hold_down after
   one -> automatic failback is suspended (and the monitor's own failback, if it has
   not reached its point of no return, is aborted). Failovers are never damped;
5. keep a synchronous service in zero-loss mode (or relax it), also while a failback
   observes its new primary: that primary must lose nothing if it dies in the window;
6. failover when the active site is failed now (results taken since the last run
   ended) and the policy is automatic;
7. failback when the primary site has been healthy for the stability window and the
   policy, the allowed window, the hold-down and the daily cap all agree.

Anything a run does goes through ``failback.engine.starter`` in a ``RunWorker``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failback.config import Service, Topology
from failback.drivers.base import Capability, Role
from failback.drivers.catalog import driver_of, has_capability, role_of
from failback.engine.executor import (
    RunOutcome,
    RunProcessLock,
    passed_point_of_no_return,
    rolling_back,
)
from failback.errors import FailbackError
from failback.hosts import HostSet
from failback.model.observed import ComponentObservation
from failback.model.plan import Plan
from failback.model.states import RunStatus
from failback.monitor import decide
from failback.monitor.capture_keeper import CaptureKeeper, capture_database
from failback.monitor.leadership import Leadership
from failback.monitor.liveness import REPORT_EVERY_S
from failback.monitor.probe_state import state_from_probes
from failback.monitor.run_worker import JournalPerThread, RunWorker
from failback.monitor.zero_loss import (
    ReplicationManager,
    prepare_target,
    synchronous_database,
)
from failback.observe.history import history_samples
from failback.observe.probes import (
    TRAFFIC_ROLES,
    HealthView,
    Probe,
    ProbeHealth,
    ProbeResult,
)
from failback.observe.service import mark_stale_primaries, primary_position
from failback.plan.fence import FENCE, plan_fence, routed_to
from failback.report.drills import last_drills
from failback.store import Journal

SAVE_EVERY_S = REPORT_EVERY_S
TICK_S = 0.25
SITE_NODE_TICK_S = 0.05
"""How soon a leader that waits for a failed site's own node to report the failure looks
again: that node sees it within a few milliseconds of the leader (the same detection
settings), and each look is one etcd read; a whole tick would add up to 250 ms of RTO."""
"""How often a service is reconciled while anything may be under way: a probe failing,
a run or the monitor's worker holding it, away from home, synchronous replication kept,
a control plane, a retry waiting (time-based decisions are taken within this)."""
STEADY_TICK_S = SAVE_EVERY_S
"""How often a *steady* service is reconciled (every probe passing, at home, nothing held
or pending, nothing automatic to keep): no decision of such a service depends on time,
and what would change one wakes it at once (a probe's judged status, or what a probe
sees: a promoted standby, a re-routed router; ``sees_differently``). The level is still
looked at every STEADY_TICK_S (a person's run, a journal edited by hand), and the
heartbeat and health are saved as often as before."""
SYNC_ERRORS_REPORTED = 4
"""Consecutive cycles synchronous mode could not be kept before it is reported (a
primary that just died fails a cycle or two before its probe says so)."""
RUNS_REFRESH_S = 10.0
"""The list of past runs only changes while a run holds the service (it is re-read when
the holder changes); this re-reads it anyway now and then (a journal edited by hand)."""
REFUSED_RETRY_S = 2.0
FENCE_RETRY_S = 2.0
"""A fence that did not succeed (router unreachable...) is tried again after this, doubled
after each further failure up to FENCE_RETRY_MAX_S (a router down for an hour must not
leave a run every two seconds in the history)."""
FENCE_RETRY_MAX_S = 60.0
POLICY_RUN_KINDS = ("failover", "failback")
"""The runs the policies count (hold-down, daily cap, flap damping): a fence run moves no
service and must not push earlier failbacks out of the history the policies read."""
HOSTNAME = socket.gethostname()


@dataclass
class Edge:
    """A probe crossed its failure threshold (either way)."""

    probe: Probe
    failed: bool
    result: ProbeResult


@dataclass
class ServiceMonitor:
    """Everything the monitor keeps about one service between ticks."""

    name: str
    service: Service
    topology: Topology
    state_dir: Path
    journals: JournalPerThread
    health: dict[str, ProbeHealth]
    episodes: set[str] = field(default_factory=set)
    worker: RunWorker | None = None
    aborter: RunWorker | None = None
    retry_at: dict[str, float] = field(default_factory=dict)
    last_refusal: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0
    heartbeat: float | None = None
    free_since: float = 0.0
    """When the service was last seen free of runs: failures count on results since."""
    replication: ReplicationManager | None = None
    capture: CaptureKeeper | None = None
    """Keeps the primary ready to have its lost commits read after a failover."""
    hosts: HostSet | None = None
    """Connections to the machines the monitor keeps open for its runs (not the
    probes'): a failover spends no SSH handshake in the clients' outage."""
    seat: Leadership | None = None
    """This node's leadership in a control plane: its runs prove it before every step and
    fence their journal writes with its lease; None on one machine."""
    _held: bool = False
    _held_by: str | None = None
    """The kind of run that held the service last (a fence does not reset free_since)."""
    _sync_errors: int = 0
    _fence_failures: int = 0
    """Fence runs in a row that did not succeed (the retry delay doubles with each)."""
    _runs: list[Any] | None = None
    _runs_key: tuple[Any, ...] = ()
    _drill_at: float | None = None
    _drill_key: int | None = None
    _edges: list[Edge] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    steady: bool = False
    """The last reconcile found the service steady (``STEADY_TICK_S``)."""
    awaiting_site_node: bool = False
    """The last reconcile would have failed over but waits for the failed site's own
    control-plane node to report the failure too (``SITE_NODE_TICK_S``)."""
    saver: (
        Callable[[str, str, dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]], None]
        | None
    ) = None
    """Where the heartbeat and health go (``monitor.saves.Saves.put``: the monitor writes
    every service's together); None: written to the journal here."""

    def __post_init__(self) -> None:
        db = self._db()
        if db is not None and self.service.policy.synchronous:
            self.replication = ReplicationManager(self.name, self.service, db)
        capturing = capture_database(self.service)
        if capturing is not None:
            self.capture = CaptureKeeper(self.name, self.service, capturing, self._emit)

    def _emit(self, kind: str, message: str, data: dict[str, Any]) -> None:
        self.journals.get().add_event(kind, message, service=self.name, data=data)

    # called on the event loop -------------------------------------------------

    def on_result(self, probe: Probe, result: ProbeResult) -> bool:
        """Record one probe result; True when the probe's judged status changed."""
        health = self.health[probe.key]
        was_failed = health.failed
        changed = health.record(result)
        if health.failed != was_failed:
            with self._lock:
                self._edges.append(Edge(probe, health.failed, result))
        return changed

    def views(self, *, records: bool = True) -> dict[str, HealthView]:
        """Copies of every probe's health; ``records=False`` leaves out what the journal
        keeps (``ProbeHealth.to_dict``), wanted only by a reconcile that saves it."""
        return {key: HealthView.of(h, record=records) for key, h in self.health.items()}

    def save_due(self, now: float) -> bool:
        """A reconcile at ``now`` saves the heartbeat and the health records."""
        return now - self.saved_at >= SAVE_EVERY_S

    def next_tick(self) -> float:
        """Seconds until the next reconcile unless woken sooner."""
        if self.awaiting_site_node:
            return SITE_NODE_TICK_S
        return STEADY_TICK_S if self.steady else TICK_S

    # called in the service's own thread -----------------------------------------

    def reconcile(self, views: dict[str, HealthView], now: float) -> None:
        self.awaiting_site_node = False
        journal = self.journals.get()
        holder = journal.lock_holder(self.name)
        state = journal.service_state(self.name) or {}
        active = str(state.get("active_site") or self.service.primary_site)
        run = journal.get_run(holder) if holder is not None else None
        self._collect_workers(journal, now)
        held = run is not None or _alive(self.worker) or _alive(self.aborter)
        if self._held and not held and self._held_by != FENCE:
            # failures count on results taken from now on (a run stops and restarts
            # databases on purpose; a fence run does not)
            self.free_since = now
        self._held = held
        if held:
            self._held_by = run.kind if run is not None else _kind(self.worker, self.aborter)
        facts = self._run_facts(run) if run is not None else None
        self._edges_to_events(journal)
        observations = self._observations(views, active)
        self._fence_on_sight(journal, observations, run, active, now)
        if not held:
            self._lift_self_fence(journal, observations, active)
        runs = self._past_runs(journal, holder, now)
        self._flap_damping(journal, views, state, run, runs, now)
        # zero-loss mode is kept while nothing acts: no run, a run in its observation
        # window, or a failback parked at a gate (a failover may have to follow it)
        parked = facts is not None and facts.parked and not _alive(self.aborter)
        if self.replication is not None and (not held or _observing(run) or parked):
            self._synchronous_mode(journal, views, active, state, now)
        if self.capture is not None:
            self.capture.target = self._capture_target(views, active, held)
        run_doc = None
        if facts is not None:
            run_doc = {"id": facts.id, "kind": facts.kind, "by": facts.by,
                       "status": "interrupted" if facts.interrupted else facts.status}  # fmt: skip
            self._handle_run(journal, facts, now)
        self.decisions["failover"] = self._failover(journal, views, active, state, facts, now)
        self.decisions["failback"] = self._failback(
            journal, views, active, state, held, facts, runs, now
        )
        records = {k: v.record for k, v in views.items() if v.record is not None}
        if self.save_due(now) and len(records) == len(views):
            self.saved_at = now
            data: dict[str, Any] = {}
            primary = primary_position(observations, active)
            if primary:
                data["last_primary"] = primary
            data["monitor"] = self._document(now, run=run_doc)
            samples = _history(views, observations)
            if self.saver is not None:
                self.saver(self.name, self.service.primary_site, data, records, samples)
            else:
                journal.update_service_data(self.name, self.service.primary_site, **data)
                journal.save_health(self.name, records)
                journal.record_history(self.name, samples)
        self.steady = self._is_steady(views, active, now)

    def _capture_target(
        self, views: dict[str, HealthView], active: str, held: bool
    ) -> tuple[str, str] | None:
        """(primary, standby) while nothing holds the service and its database answers
        at the active site: a run moves the primary, a dead one has nothing to keep."""
        assert self.capture is not None
        db = [
            v for v in views.values()
            if v.probe.component == self.capture.db and v.probe.site == active
        ]  # fmt: skip
        if held or not db or any(v.status != "passing" for v in db):
            return None
        return active, str(self.service.other_site(active))

    def _is_steady(self, views: dict[str, HealthView], active: str, now: float) -> bool:
        """Nothing of this service is under way or waits for time to pass (``STEADY_TICK_S``)."""
        with self._lock:
            edges = bool(self._edges)
        return (
            self.seat is None
            and self.replication is None
            and not self._held
            and self.worker is None
            and self.aborter is None
            and not edges
            and active == self.service.primary_site
            and all(v.status == "passing" for v in views.values())
            and all(at <= now for at in self.retry_at.values())
            and not any(k.startswith("stale:") for k in self.episodes)
            and self.decisions.get("failover", {}).get("code") == "healthy"
            and self.decisions.get("failback", {}).get("code") == "home"
        )

    def mark_stopped(self, now: float) -> None:
        """The process ends: ``failback status`` must not show it running any more."""
        doc = self._document(self.heartbeat or now, run=None)
        doc["stopped_at"] = now
        self.journals.get().update_service_data(self.name, self.service.primary_site, monitor=doc)

    def _document(self, now: float, *, run: dict[str, Any] | None) -> dict[str, Any]:
        """What ``failback status`` reads (failback.monitor.liveness): who, alive when."""
        self.heartbeat = now
        doc = {"pid": os.getpid(), "host": HOSTNAME, "heartbeat": now, "run": run,
               **self.decisions}  # fmt: skip
        if self.capture is not None and self.capture.last:
            doc["capture"] = self.capture.last
        return doc

    # pieces ----------------------------------------------------------------------

    def _db(self) -> str | None:
        """The database whose synchronous replication the monitor manages, if any."""
        return synchronous_database(self.service)

    def _run_facts(self, run: Any) -> decide.RunFacts:
        alive = _alive(self.worker) or RunProcessLock(self.state_dir, run.id).is_held_elsewhere()
        backward = rolling_back(run)
        parked = (
            run.kind == "failback"
            and run.status == "waiting-approval"
            and not alive
            and not backward
            and passed_point_of_no_return(run, self.journals.get().steps(run.id)) is None
        )
        return decide.RunFacts(
            id=run.id,
            kind=run.kind,
            by=str(run.options.get("by") or "person"),
            status=run.status,
            alive=alive,
            backward=backward,
            parked=parked,
        )

    def _handle_run(self, journal: Journal, facts: decide.RunFacts, now: float) -> None:
        """The run holding the service died: the monitor's own is continued in the direction
        it was going (``Executor.execute`` knows which), a person's is left to that person."""
        decision = decide.decide_run(facts)
        key = f"interrupted:{facts.id}"
        if decision.code == "interrupted" and key not in self.episodes:
            self.episodes.add(key)
            journal.add_event(
                "run.interrupted", decision.reason, run_id=facts.id, service=self.name,
                data={"by": facts.by, "status": facts.status, "backward": facts.backward},
            )  # fmt: skip
        if not decision.act or _alive(self.worker) or now < self.retry_at.get("resume", 0.0):
            return
        self.retry_at["resume"] = now + REFUSED_RETRY_S
        journal.add_event(
            "run.resumed_by_monitor", decision.reason, run_id=facts.id, service=self.name,
            data={"backward": facts.backward},
        )  # fmt: skip
        self.worker = RunWorker(
            state_dir=self.state_dir,
            topology=self.topology,
            service=self.name,
            hosts=self.hosts,
            seat=self.seat,
            kind=facts.kind,
            run_id=facts.id,
        ).start()

    def _synchronous_mode(
        self, journal: Journal, views: dict[str, HealthView], active: str, state: dict[str, Any],
        now: float,
    ) -> None:  # fmt: skip
        """Zero-loss mode when possible; a primary that stops answering meanwhile (it died
        since its last probe) is the probes' to judge: the rest of the cycle goes on."""
        assert self.replication is not None
        try:
            record = self.replication.reconcile(journal, views, active, state.get("sync_mode"), now)
        except Exception as exc:  # never in the way of this tick's failover decision
            self._sync_errors += 1
            if self._sync_errors == SYNC_ERRORS_REPORTED:  # persistent, not a primary dying
                why = exc.message if isinstance(exc, FailbackError) else repr(exc)
                journal.add_event(
                    "monitor.error", f"{self.name}: synchronous mode not kept: {why}",
                    service=self.name,
                )  # fmt: skip
            return
        self._sync_errors = 0
        if record is not None:
            state["sync_mode"] = record

    def _past_runs(self, journal: Journal, holder: int | None, now: float) -> list[Any]:
        """The service's last runs, newest first (for hold-down, daily cap, flap damping)."""
        key = (holder, int(now // RUNS_REFRESH_S))
        if self._runs is None or key != self._runs_key:
            self._runs = journal.list_runs(service=self.name, limit=100, kinds=POLICY_RUN_KINDS)
            self._runs_key = key
        return self._runs

    def _collect_workers(self, journal: Journal, now: float) -> None:
        if self.aborter is not None and not self.aborter.alive():
            if self.aborter.refusal:
                journal.add_event(
                    "monitor.error",
                    f"abort of run {self.aborter.run_id} failed: {self.aborter.refusal}",
                    run_id=self.aborter.run_id, service=self.name,
                )  # fmt: skip
            self.aborter = None
        worker = self.worker
        if worker is None or worker.alive():
            return
        self.worker = None
        if worker.refusal is None:
            self.last_refusal.pop(worker.kind, None)
            outcome = worker.outcome
            if worker.kind == FENCE and outcome is not None and outcome.status != "succeeded":
                # its own events say why; tried again (if still routed) after a pause that
                # doubles while the fence keeps failing
                delay = min(FENCE_RETRY_S * 2**self._fence_failures, FENCE_RETRY_MAX_S)
                self._fence_failures += 1
                self.retry_at[FENCE] = now + delay
                self.last_refusal[FENCE] = f"run {outcome.run_id} {outcome.status}"
            elif worker.kind == FENCE:
                self._fence_failures = 0
            return
        self.retry_at[worker.kind] = now + REFUSED_RETRY_S
        if self.last_refusal.get(worker.kind) != worker.refusal:
            self.last_refusal[worker.kind] = worker.refusal
            journal.add_event(
                f"{worker.kind}.refused",
                f"automatic {worker.kind} of {self.name} refused: {worker.refusal}",
                service=self.name,
                data={"reason": worker.refusal},
            )

    def forget_edges(self) -> None:
        """A follower does not report: the leader does. Edges seen while following are
        dropped, so a node that wins does not report stale ones as news."""
        with self._lock:
            self._edges = []

    def _edges_to_events(self, journal: Journal) -> None:
        """Tell people when a probe crosses its threshold; decisions never depend on it."""
        with self._lock:
            edges, self._edges = self._edges, []
        for edge in edges:
            p = edge.probe
            where = f"{p.component or p.key}@{p.site}" if p.site else p.key
            if edge.failed:
                journal.add_event(
                    "failure.detected",
                    f"{where} declared failed after {p.threshold} failed checks: "
                    f"{edge.result.detail}",
                    service=self.name,
                    data={"probe": p.key, "site": p.site, "detail": edge.result.detail},
                )
            else:
                journal.add_event(
                    "failure.recovered",
                    f"{where} passes again: {edge.result.detail}",
                    service=self.name,
                    data={"probe": p.key, "site": p.site},
                )

    def _site_failures(
        self, views: dict[str, HealthView], site: str, *, since: float = 0.0
    ) -> list[HealthView]:
        """Non-router probes of ``site`` declared failed now, on results taken after
        ``since`` (the routers are the shared traffic layer, not the site)."""
        return [
            v
            for v in views.values()
            if v.probe.site == site
            and not v.probe.is_traffic_layer
            and v.failed
            and v.last is not None
            and v.last.at >= since
        ]

    def _flap_damping(
        self,
        journal: Journal,
        views: dict[str, HealthView],
        state: dict[str, Any],
        run: Any,
        runs: list[Any],
        now: float,
    ) -> None:
        """Suspend automatic failback when the primary site failed during or just after a
        failback (level-triggered: decided again on every tick, see decide.decide_flap)."""
        home = self.service.primary_site
        latest = next((r for r in runs if r.kind == "failback"), None)
        if run is not None and run.kind == "failback":
            latest = run
        failures = tuple(
            (f"{v.probe.key}: {v.last.detail if v.last else '?'}", float(v.failing_since or 0.0))
            for v in self._site_failures(views, home)
        )
        if latest is None or not (failures or "switch_back" in latest.values):
            return  # nothing failed at home and no window switched back: nothing to damp
        facts = decide.FlapFacts(
            now=now,
            service=self.name,
            home=home,
            hold_down=float(self.service.policy.hold_down),
            auto=state.get("auto_failback") or {},
            failures=failures,
            failback=self._failback_facts(journal, latest) if latest is not None else None,
        )
        decision = decide.decide_flap(facts)
        if decision.act:
            record = {"enabled": False, "reason": decision.reason, "by": "monitor", "at": now}
            journal.update_service_data(self.name, home, auto_failback=record)
            state["auto_failback"] = record
            journal.add_event(
                "failback.suspended",
                f"automatic failback of {self.name} suspended: {decision.reason}",
                service=self.name,
                data=record,
            )
        if not decide.abort_own_failback(facts) or _alive(self.aborter):
            return
        assert facts.failback is not None
        key = f"abort:{facts.failback.id}"
        if key in self.episodes:
            return
        self.episodes.add(key)
        journal.add_event(
            "failback.aborting",
            f"{home} failed during the monitor's failback (run {facts.failback.id}) before its"
            f" point of no return ({failures[0][0]}): the monitor aborts it",
            run_id=facts.failback.id, service=self.name,
            data={"failures": [what for what, _ in failures]},
        )  # fmt: skip
        self.aborter = RunWorker(
            state_dir=self.state_dir,
            topology=self.topology,
            service=self.name,
            hosts=self.hosts,
            seat=self.seat,
            kind="failback",
            run_id=facts.failback.id,
            abort=True,
        ).start()

    def _abort_parked(self, journal: Journal, run: decide.RunFacts, reason: str) -> None:
        """Undo a failback parked at a gate so that the failover can follow (next tick)."""
        key = f"abort-parked:{run.id}"
        if _alive(self.aborter) or key in self.episodes:
            return
        self.episodes.add(key)
        journal.add_event(
            "failback.aborting", reason, run_id=run.id, service=self.name,
            data={"by": run.by, "status": run.status},
        )  # fmt: skip
        self.aborter = RunWorker(
            state_dir=self.state_dir,
            topology=self.topology,
            service=self.name,
            hosts=self.hosts,
            seat=self.seat,
            kind=run.kind,
            run_id=run.id,
            abort=True,
        ).start()

    def _failback_facts(self, journal: Journal, run: Any) -> decide.FailbackRunFacts:
        """Where a failback run stands towards the primary site (for flap damping)."""
        home = self.service.primary_site
        ended = run.finished_at if run.status in ("succeeded", "rolled-back", "aborted") else None
        steps = list(run.plan.get("steps") or [])
        records = journal.steps(run.id)
        went_home = False
        quiet: float | None = 0.0
        for spec, record in zip(steps, records, strict=False):
            attempted = record.attempts > 0
            if spec.get("point_of_no_return") and attempted and record.undo_status != "undone":
                went_home = True
            if not self._acts_on(spec, home):
                continue
            if record.status in ("applying", "verifying") or record.undo_status == "undoing":
                quiet = None  # the run stops or restarts the site on purpose right now
            elif quiet is not None and attempted and record.finished_at:
                quiet = max(quiet, float(record.finished_at))
        died = run.values.get("switch_back") or {}
        return decide.FailbackRunFacts(
            id=run.id,
            by=str(run.options.get("by") or "person"),
            ended_at=float(ended) if ended else None,
            went_home=went_home,
            succeeded=run.status == "succeeded",
            home_quiet_since=quiet,
            new_primary_died=died.get("why") if died.get("how") == "failover" else None,
        )

    def _acts_on(self, spec: dict[str, Any], site: str) -> bool:
        """A step that acts on one of ``site``'s own components (not a gate, not a router)."""
        if spec.get("site") != site or spec.get("kind") == "gate":
            return False
        component = self.service.components.get(spec.get("component") or "")
        return component is not None and role_of(component) not in TRAFFIC_ROLES

    def _observations(
        self, views: dict[str, HealthView], active: str
    ) -> list[ComponentObservation]:
        """The probes' last observations, labelled (``mark_stale_primaries``). Only those
        the labelling changes are copied (a database primary away from the active site);
        the others are the probes' own, read and never changed here: copying every
        observation of every service on every tick was most of a steady tick's CPU."""
        observed = [
            v.observation.model_copy(deep=True) if _may_be_stale(v.observation, active)
            else v.observation
            for v in views.values()
            if v.observation is not None
        ]  # fmt: skip
        mark_stale_primaries(observed, active)
        return observed

    def _lift_self_fence(
        self, journal: Journal, observed: list[ComponentObservation], active: str
    ) -> None:
        """A site whose node fenced it while cut off from etcd, and that nobody failed
        over from (it is still the active site, no run holds the service): once every
        node of that site reaches etcd again, lift the fence (site_guard.py). A site that
        was failed over from is a stale primary instead, failed back to later."""
        if self.seat is None:
            return
        fenced = [
            o
            for o in observed
            if o.site == active
            and o.role == "primary"
            and has_capability(self.service.components[o.component], Capability.SELF_FENCE)
            and driver_of(self.service.components[o.component]).self_fenced(o.data)
        ]
        if not fenced:
            return
        present, why = self.seat.site_nodes_present(active)
        if not present:
            return
        for o in fenced:
            settings = self.service.components[o.component]
            try:
                assert self.hosts is not None
                host = self.hosts.get(self.topology.host_name(settings, active))
                lifted = driver_of(settings).lift_self_fence(settings, active, host)
            except FailbackError as exc:
                journal.add_event(
                    "site.unfence_failed",
                    f"{o.component}@{active}: the self-fence could not be lifted: {exc.message}",
                    service=self.name,
                )
                continue
            if lifted:
                journal.add_event(
                    "site.unfenced",
                    f"{o.component}@{active} fenced itself while its site was cut off from "
                    f"etcd; nobody failed over from {active} and {why}: fence lifted",
                    service=self.name,
                    data={"component": o.component, "site": active},
                )

    def _fence_on_sight(
        self,
        journal: Journal,
        observed: list[ComponentObservation],
        run: Any,
        active: str,
        now: float,
    ) -> None:
        """A stale primary is fenced at once and reported (promise 1), through a short run
        of kind ``fence`` (``failback.plan.fence``): the same executor, lock, journal and
        report as any run, so ``failback runs`` shows what was done and when."""
        stale = {o.site: o for o in observed if o.role == "stale-primary"}
        for key in [k for k in self.episodes if k.startswith("stale:")]:
            if key[6:] not in stale:
                self.episodes.discard(key)
        busy = None
        if run is not None:
            busy = f"run {run.id} ({run.kind})"
        elif _alive(self.worker) or _alive(self.aborter):
            busy = f"the monitor's {_kind(self.worker, self.aborter)}"
        retrying = None
        if now < self.retry_at.get(FENCE, 0.0):
            retrying = self.last_refusal.get(FENCE, "retrying")
        for site, obs in stale.items():
            routed = tuple(routed_to(observed, site))
            decision = decide.decide_fence(
                decide.FenceFacts(
                    site=site,
                    routed=routed,
                    seen=f"stale:{site}" in self.episodes,
                    busy=busy,
                    retrying=retrying,
                )
            )
            if not decision.act:
                continue
            plan = plan_fence(
                self.name, self.service, observed, stale_site=site, active_site=active
            )
            self.episodes.add(f"stale:{site}")
            report = _fence_report(self.name, obs, plan, was_routed=bool(routed))
            if not plan.steps:
                report(journal, None)
                continue
            self.worker = RunWorker(
                state_dir=self.state_dir,
                topology=self.topology,
                service=self.name,
                hosts=self.hosts,
                seat=self.seat,
                kind=FENCE,
                plan=plan,
                after=report,
            ).start()
            self._held, self._held_by = True, FENCE
            return  # one run at a time: another stale site is fenced on a later tick

    def _failover(
        self,
        journal: Journal,
        views: dict[str, HealthView],
        active: str,
        recorded: dict[str, Any],
        run: decide.RunFacts | None,
        now: float,
    ) -> dict[str, Any]:
        # judged on results taken since the service was last free of runs: a run stops
        # and restarts databases on purpose, and a result from then is not news; a
        # failure that goes on after the run is seen again within one probe interval
        failed = self._site_failures(views, active, since=self.free_since)
        refused = None
        if now < self.retry_at.get("failover", 0.0):
            refused = self.last_refusal.get("failover", "retrying")
        starting = self.worker.kind if _alive(self.worker) and run is None else None
        if starting is None and _alive(self.aborter):
            starting = "abort"
        decision = decide.decide_failover(
            decide.FailoverFacts(
                policy=self.service.policy,
                active=active,
                failed=tuple(f"{v.probe.key}: {v.last.detail if v.last else '?'}" for v in failed),
                run=run,
                starting=starting,
                refused=refused,
            )
        )
        if decision.code == "healthy":
            self.episodes.discard("failover.needed")
        if decision.code == "manual" and "failover.needed" not in self.episodes:
            self.episodes.add("failover.needed")
            journal.add_event(
                "failover.needed",
                f"{decision.reason[len('manual: ') :]}; policy is manual: "
                f"`failback failover {self.name}`",
                service=self.name,
                data={"site": active, "failed": [v.probe.key for v in failed]},
            )
        if decision.act and decision.code == "abort-parked" and run is not None:
            self._abort_parked(journal, run, decision.reason)
            return decision.to_dict(now)
        if not decision.act or decision.code != "go":
            return decision.to_dict(now)
        if self.seat is not None:
            released, why = self.seat.site_released(active, [v.probe.key for v in failed])
            self.awaiting_site_node = not released
            if not released:
                if "failover.site_node" not in self.episodes:
                    self.episodes.add("failover.site_node")
                    journal.add_event("failover.waiting", why, service=self.name)
                return decide.Decision(False, why, "site-node").to_dict(now)
            self.episodes.discard("failover.site_node")
        prepare = None
        db = self._db()
        if self.replication is not None and db is not None:
            target = self.service.other_site(active)

            def prepare() -> None:
                prepare_target(self.service, db, target)

        self.worker = RunWorker(
            state_dir=self.state_dir,
            topology=self.topology,
            service=self.name,
            hosts=self.hosts,
            seat=self.seat,
            kind="failover",
            prepare=prepare,
            # planned from what the probes just saw: observing the failed site again
            # would wait out its connect timeout inside the clients' outage
            observed=state_from_probes(
                self.name, self.service, views, recorded, failed_site=active, now=now
            ),
        ).start()
        self._held = True
        self._held_by = "failover"
        return decision.to_dict(now)

    def _failback(
        self,
        journal: Journal,
        views: dict[str, HealthView],
        active: str,
        state: dict[str, Any],
        held: bool,
        run: decide.RunFacts | None,
        runs: list[Any],
        now: float,
    ) -> dict[str, Any]:
        home = self.service.primary_site
        if run is not None:
            if run.kind == "failback" and run.status == "waiting-approval":
                reason = f"waiting for approval: `failback approve {run.id}`"
                return _decision(reason, "approval", now)
            return decide.decide_run(run).to_dict(now)
        if active == home:
            self._episode(None)
            return _decision(f"home at {home}: nothing to fail back", "home", now)
        mine = [
            v
            for v in views.values()
            if (v.probe.site == home or (v.probe.site is None and v.probe.kind == "check"))
            and v.probe.precheck
        ]
        since = [v.passing_since for v in mine]
        failing = "; ".join(
            f"{v.probe.key}: {v.last.detail if v.last else 'not checked yet'}"
            for v in mine
            if v.passing_since is None
        )
        last = _last_failback_from(runs)
        automatic_24h = sum(
            1
            for r in runs
            if r.kind == "failback"
            and r.options.get("by") == "monitor"
            and r.created_at > now - 86400
        )
        facts = decide.FailbackFacts(
            now=now,
            policy=self.service.policy,
            home=home,
            auto=state.get("auto_failback") or {},
            stable_since=None if not since or None in since else max(s for s in since if s),
            failing=failing,
            last_failback_at=last[1] if last else None,
            automatic_failbacks_24h=automatic_24h,
            last_failback_ending=None if last is None else last[2],
            last_drill_at=self._last_drill_at(journal, now),
        )
        decision = decide.decide_failback(facts)
        if (held or self.worker is not None) and decision.code not in _OUTLIVES_A_RUN:
            kind = self._held_by or _kind(self.worker, self.aborter)
            return _decision(f"observing: a {kind} run is in progress", "busy", now)
        if decision.act and now >= self.retry_at.get("failback", 0.0):
            self.worker = RunWorker(
                state_dir=self.state_dir,
                topology=self.topology,
                service=self.name,
                hosts=self.hosts,
                seat=self.seat,
                kind="failback",
            ).start()
            self._held = True
            self._held_by = "failback"
        elif decision.act:
            reason = self.last_refusal.get("failback", "retrying")
            return _decision(f"refused: {reason}", "refused", now)
        self._episode_event(journal, decision)
        return decision.to_dict(now)

    def _last_drill_at(self, journal: Journal, now: float) -> float | None:
        """When the last successful drill ended, read only under ``require_drill_within``
        (and at most every ``RUNS_REFRESH_S``, like the past runs)."""
        if self.service.policy.require_drill_within is None:
            return None
        key = int(now // RUNS_REFRESH_S)
        if self._drill_key != key:
            success = last_drills(journal, self.name, now).last_success
            self._drill_at = (
                None if success is None else (success["finished_at"] or success["started_at"])
            )
            self._drill_key = key
        return self._drill_at

    def _episode(self, code: str | None) -> bool:
        """True the first time ``code`` is the failback decision since it was another."""
        keys = [k for k in self.episodes if k.startswith("failback:")]
        new = f"failback:{code}" if code else None
        for key in keys:
            if key != new:
                self.episodes.discard(key)
        if new is None or new in self.episodes:
            return False
        self.episodes.add(new)
        return True

    def _episode_event(self, journal: Journal, decision: decide.Decision) -> None:
        kinds = {"stabilizing": "failback.waiting_stability", "window": "failback.waiting_window"}
        first = self._episode(decision.code)
        if first and decision.code in kinds:
            journal.add_event(
                kinds[decision.code],
                f"failback of {self.name} waits: {decision.reason}",
                service=self.name,
                data={"reason": decision.reason},
            )


ENDED_FAILBACKS = ("succeeded", "rolled-back", "aborted")
"""Failbacks the hold-down counts from: one that came home, one that turned back, and
one a person aborted (the clearest "not now")."""


_OUTLIVES_A_RUN = frozenset({"manual", "suspended", "disabled"})
"""Failback decisions that still hold when the run in progress ends: shown instead of
"busy", which would hide them for as long as any run (a fence, say) holds the service."""


def _decision(reason: str, code: str, now: float) -> dict[str, Any]:
    return decide.Decision(False, reason, code).to_dict(now)


def _last_failback_from(runs: list[Any]) -> tuple[int, float, str] | None:
    """The newest failback that ended home or turned back: its id, end and status."""
    for run in runs:
        if run.kind == "failback" and run.status in ENDED_FAILBACKS and run.finished_at:
            return run.id, float(run.finished_at), str(run.status)
    return None


def _may_be_stale(obs: ComponentObservation, active: str) -> bool:
    """``mark_stale_primaries`` may relabel this observation (and so needs a copy)."""
    return obs.kind == Role.DATABASE and obs.role == "primary" and obs.site != active


def sees_differently(before: ProbeResult | None, after: ProbeResult) -> bool:
    """What a probe sees changed in a way a decision reads at once: the component's role
    (a standby promoted: a stale primary to fence; a router sending clients elsewhere) or
    its health. Wakes a steady service's reconcile (``STEADY_TICK_S``)."""
    if before is None:
        return True
    old, new = before.observation, after.observation
    if old is None or new is None:
        return (old is None) != (new is None)
    return old.role != new.role or old.healthy != new.healthy


def _alive(worker: RunWorker | None) -> bool:
    return worker is not None and worker.alive()


def _observing(run: Any) -> bool:
    """A failback in its observation window, not switching back: the new primary is the
    active site's, and the monitor keeps it in zero-loss mode."""
    return (
        run is not None
        and run.status == "observing"
        and "reverted_because" not in run.values
        and not rolling_back(run)
    )


def _kind(worker: RunWorker | None, aborter: RunWorker | None) -> str:
    """What the monitor's live worker does (``abort`` for an aborter)."""
    if worker is not None and worker.alive():
        return worker.kind
    return "abort" if aborter is not None and aborter.alive() else "nothing"


def _fence_report(
    service: str, stale: ComponentObservation, plan: Plan, *, was_routed: bool
) -> Callable[[Journal, RunOutcome | None], None]:
    """The ``stale_primary.fenced`` event, journaled once the fence run succeeded (or at
    once when there was nothing to fence): where, whether clients were sent there, and
    which steps fenced it."""

    def report(journal: Journal, outcome: RunOutcome | None) -> None:
        if outcome is not None and outcome.status != RunStatus.SUCCEEDED:
            return  # the run's own events say why; the monitor tries again
        fenced = [f"{step.component}: {step.title}" for step in plan.steps]
        run_id = outcome.run_id if outcome is not None else None
        how = f"fenced by run {run_id} ({'; '.join(fenced)})" if fenced else "nothing to fence"
        journal.add_event(
            "stale_primary.fenced",
            f"{plan.from_site}'s {stale.component} claims the primary role while"
            f" {plan.to_site} holds it: {how}"
            + (" (it was routed!)" if was_routed else " (it was not routed)"),
            run_id=run_id,
            service=service,
            data={"site": plan.from_site, "component": stale.component,
                  "was_routed": was_routed, "fenced": fenced, "run_id": run_id},
        )  # fmt: skip

    return report


def _history(
    views: dict[str, HealthView], observations: list[ComponentObservation]
) -> list[dict[str, Any]]:
    """The console's history samples (observe/history.py): a component counts as
    healthy only while the monitor does not judge its probe failed."""
    failed = {(v.probe.component, v.probe.site) for v in views.values() if v.failed}
    samples = history_samples(observations)
    for sample in samples:
        if (sample["component"], sample["site"]) in failed:
            sample["healthy"] = False
    return samples
