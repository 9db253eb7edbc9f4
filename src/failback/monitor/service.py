"""One service's reconcile: compare what is observed with what the policy wants, act.

Level-triggered (a Kubernetes controller, not a state machine fed by events): every
tick looks at the latest probe results and the journal, and decides from scratch.
Events are edges of that level ("first time seen failed"), remembered in
``episodes`` so that a person is told once, not every 250 ms.

Order of business on each tick:

1. read the lock, then the service state (a run records the new active site *before*
   it releases the lock, so this order never pairs a free lock with a stale site);
2. fence any stale primary at the router, whatever the policy (promise 1), unless a
   run holds the service: runs promote and route, and a failback's new primary is
   "stale" until its last step records it;
3. keep a synchronous service in zero-loss mode (or relax it);
4. failover when the active site is declared failed and the policy is automatic;
5. failback when the primary site has been healthy for the stability window and the
   policy, the allowed window, the hold-down and the daily cap all agree.

Anything a run does goes through ``failback.engine.starter`` in a ``RunWorker``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from failback.engine.executor import Executor
from failback.monitor import decide
from failback.monitor.probes import HealthView, Probe, ProbeHealth, ProbeResult
from failback.monitor.replication import ReplicationManager, prepare_target
from failback.monitor.runs import JournalPerThread, RunWorker

SAVE_EVERY_S = 1.0
REFUSED_RETRY_S = 2.0


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
    service: Any
    topology: Any
    state_dir: Path
    journals: JournalPerThread
    health: dict[str, ProbeHealth]
    episodes: set[str] = field(default_factory=set)
    worker: RunWorker | None = None
    retry_at: dict[str, float] = field(default_factory=dict)
    last_refusal: dict[str, str] = field(default_factory=dict)
    decisions: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0
    started: bool = False
    busy_until: float = 0.0
    replication: ReplicationManager | None = None
    _edges: list[Edge] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        db = self._db()
        if db is not None and self.service.policy.synchronous:
            self.replication = ReplicationManager(self.name, self.service, db)

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

    def views(self) -> dict[str, HealthView]:
        return {key: HealthView.of(h) for key, h in self.health.items()}

    # called in the service's own thread -----------------------------------------

    def reconcile(self, views: dict[str, HealthView], now: float) -> None:
        journal = self.journals.get()
        holder = journal.lock_holder(self.name)
        state = journal.service_state(self.name) or {}
        active = str(state.get("active_site") or self.service.primary_site)
        run_doc = self._run_doc(journal, holder)
        if not self.started:
            self.started = True
            self._resume_interrupted(journal, run_doc)
        busy = holder is not None or (self.worker is not None and self.worker.alive())
        self._collect_worker(journal, now)
        self._edges_to_events(journal, active, state, now)
        observations = self._observations(views, active)
        self._fence_on_sight(journal, observations, busy)
        data: dict[str, Any] = {}
        if self.replication is not None and not busy:
            record = self.replication.reconcile(journal, views, active, state.get("sync_mode"), now)
            if record is not None:
                state["sync_mode"] = record
        self.decisions["failover"] = self._failover(journal, views, active, busy, run_doc, now)
        self.decisions["failback"] = self._failback(
            journal, views, active, state, busy, run_doc, now
        )
        if now - self.saved_at >= SAVE_EVERY_S:
            self.saved_at = now
            primary = self._primary_position(observations, active)
            if primary:
                data["last_primary"] = primary
            data["monitor"] = {
                "pid": os.getpid(),
                "heartbeat": now,
                "run": run_doc,
                **self.decisions,
            }
            journal.update_service_data(self.name, self.service.primary_site, **data)
            journal.save_health(self.name, {k: v.record for k, v in views.items()})

    # pieces ----------------------------------------------------------------------

    def _db(self) -> str | None:
        names = [n for n, c in self.service.components.items() if c.driver == "postgres"]
        return names[0] if names else None

    def _run_doc(self, journal: Any, holder: int | None) -> dict[str, Any] | None:
        if holder is None:
            return None
        run = journal.get_run(holder)
        return {
            "id": run.id,
            "kind": run.kind,
            "status": Executor(journal).effective_status(run),
            "by": run.options.get("by", "person"),
        }

    def _resume_interrupted(self, journal: Any, run_doc: dict[str, Any] | None) -> None:
        """A run left ``interrupted`` (its process died) is continued: promise 3."""
        if run_doc is None or run_doc["status"] != "interrupted":
            return
        journal.add_event(
            "run.resumed_by_monitor",
            f"run {run_doc['id']} ({run_doc['kind']}) was interrupted: the monitor resumes it",
            run_id=run_doc["id"],
            service=self.name,
        )
        self.worker = RunWorker(
            state_dir=self.state_dir,
            topology=self.topology,
            service=self.name,
            kind=run_doc["kind"],
            run_id=run_doc["id"],
        ).start()

    def _collect_worker(self, journal: Any, now: float) -> None:
        worker = self.worker
        if worker is None or worker.alive():
            return
        self.worker = None
        if worker.refusal is None:
            self.last_refusal.pop(worker.kind, None)
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

    def _edges_to_events(
        self, journal: Any, active: str, state: dict[str, Any], now: float
    ) -> None:
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
                if p.site == active == self.service.primary_site and not p.is_router:
                    self._maybe_suspend(journal, state, now)
            else:
                journal.add_event(
                    "failure.recovered",
                    f"{where} passes again: {edge.result.detail}",
                    service=self.name,
                    data={"probe": p.key, "site": p.site},
                )

    def _maybe_suspend(self, journal: Any, state: dict[str, Any], now: float) -> None:
        """Flap damping: home failed again within hold_down of a failback."""
        auto = state.get("auto_failback") or {}
        if auto.get("enabled") is False:
            return
        last = _last_failback(journal, self.name)
        enabled_at = float(auto.get("at") or 0.0) if auto.get("enabled") else 0.0
        hold_down = float(self.service.policy.hold_down)
        if last is None or not decide.flapped(now, last[1], hold_down, enabled_at):
            return
        reason = (
            f"flapped at {decide.clock(now)}: {self.service.primary_site} failed "
            f"{decide.human(now - last[1])} after the failback of run {last[0]} "
            f"(hold_down {decide.human(hold_down)}); `failback auto enable {self.name}`"
        )
        record = {"enabled": False, "reason": reason, "by": "monitor", "at": now}
        journal.update_service_data(self.name, self.service.primary_site, auto_failback=record)
        state["auto_failback"] = record
        journal.add_event(
            "failback.suspended",
            f"automatic failback of {self.name} suspended: {reason}",
            service=self.name,
            data=record,
        )

    def _observations(self, views: dict[str, HealthView], active: str) -> list[Any]:
        from failback.drivers.registry import mark_stale_primaries

        observed = [
            v.observation.model_copy(deep=True) for v in views.values() if v.observation is not None
        ]
        mark_stale_primaries(observed, active)
        return observed

    def _fence_on_sight(self, journal: Any, observed: list[Any], busy: bool) -> None:
        """A stale primary is fenced at the router at once, and reported (promise 1)."""
        from failback.drivers.haproxy.observation import router_target

        stale = {o.site: o for o in observed if o.role == "stale-primary"}
        for key in [k for k in self.episodes if k.startswith("stale:")]:
            if key[6:] not in stale:
                self.episodes.discard(key)
        if busy:
            return
        for site, obs in stale.items():
            routers = [
                (name, c)
                for name, c in self.service.components.items()
                if c.driver == "haproxy" and site in c.sites and _database_tier(c)
            ]
            routed = any(
                o.data.get("takes_new_sessions") if o.driver == "haproxy" else o.role == "active"
                for o in observed
                if o.driver in ("haproxy", "pgbouncer")
                and o.site == site
                and _database_tier(self.service.components[o.component])
            )
            key = f"stale:{site}"
            if key in self.episodes and not routed:
                continue
            if journal.lock_holder(self.name) is not None:
                return  # a run started meanwhile: it owns the routing now
            fenced = []
            for name, component in routers:
                target = router_target(component, site)
                target.router().fence(target.backend, target.server)
                fenced.append(f"{name}: {target.backend}/{target.server}")
            fenced += self._pause_pools_at(site, observed)
            self.episodes.add(key)
            how = f"fenced at the router ({', '.join(fenced)})" if fenced else "no router to fence"
            journal.add_event(
                "stale_primary.fenced",
                f"{site}'s {obs.component} claims the primary role while another site holds it:"
                f" {how}" + (" (it was routed!)" if routed else " (it was not routed)"),
                service=self.name,
                data={"site": site, "component": obs.component, "was_routed": routed,
                      "fenced": fenced},
            )  # fmt: skip

    def _pause_pools_at(self, site: str, observed: list[Any]) -> list[str]:
        """A PgBouncer pool pointing at the stale primary is PAUSEd: its clients wait."""
        from failback.drivers.pgbouncer.target import pgbouncer_of

        paused = []
        for obs in observed:
            if obs.driver == "pgbouncer" and obs.site == site and obs.role == "active":
                component = self.service.components[obs.component]
                databases = list(component.options.databases)
                pgbouncer_of(component).pause(
                    databases, timeout=float(component.options.pause_timeout)
                )
                paused.append(f"{obs.component}: PAUSE {', '.join(databases)}")
        return paused

    def _failover(
        self,
        journal: Any,
        views: dict[str, HealthView],
        active: str,
        busy: bool,
        run_doc: dict[str, Any] | None,
        now: float,
    ) -> dict[str, Any]:
        if run_doc is not None:
            self.busy_until = now
        # only failures that began after the last run count: a run stops and restarts
        # databases on purpose, and what a probe saw then is not a failure of the site
        failed = [
            v
            for v in views.values()
            if v.probe.site == active
            and not v.probe.is_router
            and v.failed
            and (v.failing_since or 0.0) > self.busy_until
        ]
        policy = self.service.policy.failover
        if run_doc is not None:
            return _decision(
                f"observing: run {run_doc['id']} ({run_doc['kind']}, by {run_doc['by']}) is "
                f"{run_doc['status']}",
                "busy",
                now,
            )
        if busy:
            return _decision(f"observing: the monitor's {self.worker.kind} is starting"
                             if self.worker else "observing", "busy", now)  # fmt: skip
        stale = [
            v.probe.key
            for v in views.values()
            if v.probe.site == active and not v.probe.is_router and v.failed and v not in failed
        ]
        if stale and not failed:
            return _decision(
                f"{active}: {', '.join(stale)} failed before the last run ended; not acted on"
                " until it passes and fails again (a person decides)",
                "stale_failure",
                now,
            )
        if not failed:
            self.episodes.discard("failover.needed")
            state = "automatic" if policy == "automatic" else "manual"
            return _decision(f"{active} healthy ({state} failover)", "healthy", now)
        what = "; ".join(f"{v.probe.key}: {v.last.detail if v.last else '?'}" for v in failed)
        if policy != "automatic":
            if "failover.needed" not in self.episodes:
                self.episodes.add("failover.needed")
                journal.add_event(
                    "failover.needed",
                    f"{active} failed ({what}); policy is manual: `failback failover {self.name}`",
                    service=self.name,
                    data={"site": active, "failed": [v.probe.key for v in failed]},
                )
            return _decision(
                f"manual: {active} failed ({what}); waiting for a person", "manual", now
            )
        if now < self.retry_at.get("failover", 0.0):
            reason = self.last_refusal.get("failover", "retrying")
            return _decision(f"{active} failed; refused: {reason}", "refused", now)
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
            kind="failover",
            prepare=prepare,
        ).start()
        return _decision(f"{active} failed ({what}): failing over", "go", now)

    def _failback(
        self,
        journal: Any,
        views: dict[str, HealthView],
        active: str,
        state: dict[str, Any],
        busy: bool,
        run_doc: dict[str, Any] | None,
        now: float,
    ) -> dict[str, Any]:
        home = self.service.primary_site
        if active == home:
            self._episode(None)
            return _decision(f"home at {home}: nothing to fail back", "home", now)
        if run_doc is not None:
            if run_doc["kind"] == "failback" and run_doc["status"] == "waiting-approval":
                reason = f"waiting for approval: `failback approve {run_doc['id']}`"
                return _decision(reason, "approval", now)
            return _decision(f"observing: run {run_doc['id']} is {run_doc['status']}", "busy", now)
        if busy:
            return _decision("observing: a run is starting", "busy", now)
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
        runs = journal.list_runs(service=self.name, limit=100)
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
        )
        decision = decide.decide_failback(facts)
        if decision.act and now >= self.retry_at.get("failback", 0.0):
            self.worker = RunWorker(
                state_dir=self.state_dir,
                topology=self.topology,
                service=self.name,
                kind="failback",
            ).start()
        elif decision.act:
            reason = self.last_refusal.get("failback", "retrying")
            return _decision(f"refused: {reason}", "refused", now)
        self._episode_event(journal, decision)
        return decision.to_dict(now)

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

    def _episode_event(self, journal: Any, decision: decide.Decision) -> None:
        kinds = {"stabilizing": "failback.waiting_stability", "window": "failback.waiting_window"}
        first = self._episode(decision.code)
        if first and decision.code in kinds:
            journal.add_event(
                kinds[decision.code],
                f"failback of {self.name} waits: {decision.reason}",
                service=self.name,
                data={"reason": decision.reason},
            )

    def _primary_position(self, observed: list[Any], active: str) -> dict[str, Any] | None:
        """The active primary's last seen WAL position: a failover reports what may be lost."""
        for obs in observed:
            if (
                obs.driver == "postgres"
                and obs.site == active
                and obs.role == "primary"
                and obs.data.get("current_lsn")
            ):
                return {"site": obs.site, "lsn": obs.data["current_lsn"], "at": obs.observed_at}
        return None


def _decision(reason: str, code: str, now: float) -> dict[str, Any]:
    return decide.Decision(False, reason, code).to_dict(now)


def _last_failback_from(runs: list[Any]) -> tuple[int, float] | None:
    for run in runs:
        if run.kind == "failback" and run.status == "succeeded" and run.finished_at:
            return run.id, float(run.finished_at)
    return None


def _last_failback(journal: Any, service: str) -> tuple[int, float] | None:
    return _last_failback_from(journal.list_runs(service=service, limit=100))


def _database_tier(component: Any) -> bool:
    """Routers in front of the database (not a stateless web tier shifted by weight)."""
    return getattr(component.options, "tier", "database") == "database"
