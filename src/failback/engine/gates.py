"""Gates and bookkeeping steps every planner uses.

A gate is a step that waits: for a person's approval, for a site to be healthy for
a stability window, or for declared checks to pass.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from failback.drivers.base import Capability, Role
from failback.drivers.catalog import components_with_role, driver_of, has_capability, role_of
from failback.engine.clean_room import CleanRoomGate, ClearIncidentMark
from failback.engine.run_context import Action, RevertRequested, WaitingForApproval
from failback.errors import StepFailed
from failback.observe.checks import checks_for, run_check
from failback.observe.probes import ProbeHealth, ProbeResult, build_probes
from failback.observe.service import observe_component, reports_wal_position


class ApprovalGate(Action):
    """Waits until a person runs ``failback approve ID``; the process exits meanwhile."""

    name = "gate.approval"

    def check(self) -> bool:
        return self.ctx.journal.is_approved(self.ctx.run_id, self.spec.id)

    def apply(self) -> dict[str, Any] | None:
        if not self.ctx.journal.is_approved(self.ctx.run_id, self.spec.id):
            raise WaitingForApproval(
                self.spec.id, self.spec.params.get("question", self.spec.title)
            )
        return {"approved": True}


class ChecksGate(Action):
    """Runs the service's declared checks of one kind; every failure is reported."""

    name = "gate.checks"

    def apply(self) -> dict[str, Any] | None:
        use = self.spec.params["use"]
        checks = checks_for(self.ctx.service, use, self.spec.site)
        local = self.ctx.host_for(None, None)
        results = [run_check(c, self.ctx.service, local, self.spec.site) for c in checks]
        for result in results:
            self.ctx.measure(
                f"check.{result.name}.ok", 1.0 if result.ok else 0.0, note=result.detail
            )
        failed = [r for r in results if not r.ok]
        if failed:
            raise StepFailed(
                f"{len(failed)} of {len(results)} {use}s failed: "
                + "; ".join(f"{r.name}: {r.detail}" for r in failed),
                # a post-check runs past the point of no return: the run keeps the service
                hint=f"fix what the check reports, then `failback resume {self.ctx.run_id}`"
                if use == "postcheck"
                else "fix what the check reports, then run the command again",
            )
        return {"checks": [r.to_dict() for r in results]}


class StabilityGate(Action):
    """Waits until every component at a site is healthy continuously for a window.

    Any failed observation restarts the window (the stability window of Keepalived's
    preempt_delay, generalised). Gives up after ``timeout``.
    """

    name = "gate.stability"

    def apply(self) -> dict[str, Any] | None:
        site = self.spec.site
        assert site is not None
        window = float(self.spec.params["window_s"])
        timeout = float(self.spec.params.get("timeout_s", max(window * 4, window + 60)))
        interval = float(self.spec.params.get("interval_s", 1.0))
        checks = checks_for(self.ctx.service, "precheck", site)
        healthy_since: float | None = None
        failures = 0
        stable_for_at_end = [0.0]

        def stable() -> tuple[bool, str]:
            nonlocal healthy_since, failures
            problems = []
            for name, component in self.ctx.service.components.items():
                if site not in component.sites or role_of(component) is Role.TIER:
                    continue
                seen = observe_component(
                    self.ctx.hosts, self.ctx.service_name, name, component, site
                )
                if not seen.healthy:
                    problems.append(f"{name}: {seen.detail}")
            for check in checks:
                result = run_check(check, self.ctx.service, self.ctx.host_for(None, None), site)
                if not result.ok:
                    problems.append(f"{check.name}: {result.detail}")
            now = time.monotonic()
            if problems:
                if healthy_since is not None:
                    failures += 1
                healthy_since = None
                return False, f"{site} unhealthy: {'; '.join(problems)}"
            if healthy_since is None:
                healthy_since = now
            stable_for = now - healthy_since
            stable_for_at_end[0] = stable_for
            if stable_for >= window:
                return True, f"{site} healthy for {stable_for:.1f}s of {window:g}s"
            return False, f"{site} healthy for {stable_for:.1f}s of {window:g}s"

        message = self.ctx.wait_until(
            stable,
            timeout=timeout,
            interval=min(interval, max(window / 5, 0.05)),
            what=f"stability window of {site}",
        )
        self.ctx.measure(
            "stable_for_s", stable_for_at_end[0], "s", note=f"{message} (window {window:g}s)"
        )
        return {"result": message, "window_restarts": failures}


class RecordActiveSite(Action):
    """Record in the state store where the service runs now and who needs a resync."""

    name = "state.record"

    def check(self) -> bool:
        state = self.ctx.journal.service_state(self.ctx.service_name) or {}
        return state.get("active_site") == self.spec.params["active_site"] and state.get(
            "needs_resync", []
        ) == self.spec.params.get("needs_resync", [])

    def apply(self) -> dict[str, Any] | None:
        self.ctx.journal.set_service_state(
            self.ctx.service_name,
            self.spec.params["active_site"],
            needs_resync=self.spec.params.get("needs_resync", []),
            last_run=self.ctx.run_id,
        )
        return None


OBSERVE_POLL_S = 0.1
"""How often the observation window looks at its probes' results (each probe keeps its
own interval and timeout: the monitor's detection settings, or the check's own)."""

TIER_EVERY_S = 0.5
"""How often the stateless tiers' servers are judged from HAProxy's statistics."""


class ObservationGate(Action):
    """After the switch, watch the new active site for the observation window, then commit.

    Until the window passes the failback can be undone. What is watched is what the
    monitor would judge a failure of that site: every component at the new active site
    that is not a router (its driver's observation; the database must be a reachable
    primary), the checks declared for that site (their own interval and threshold), and
    each stateless tier's traffic gate. A failure, or ``failback abort``, raises
    RevertRequested and the executor appends the steps that switch back
    (failback.plan.revert):

    * the new primary is alive: the same zero-loss switchover, the other way round
      (the former primary was re-protected as a streaming standby);
    * the new primary is dead: an unplanned failover to the site re-protected a moment
      ago, with the failover path's fencing, reporting what may be lost (0 when it was
      in zero-loss mode). A switchover would need the dead primary to stop cleanly.

    A probe still failing (not yet declared failed) when the window ends holds the
    commit until it passes or is declared failed. When the window passes, the run
    commits.
    """

    name = "gate.observation"

    def check(self) -> bool:
        until = self.ctx.values.get("undo_until")
        return (
            until is not None and time.time() >= float(until) and not (self.ctx.abort_requested())
        )

    def apply(self) -> dict[str, Any] | None:
        window = float(self.spec.params["window_s"])
        home = str(self.spec.params["home"])
        until = self.ctx.values.get("undo_until")
        if until is None:
            until = time.time() + window
            self.ctx.remember("undo_until", until)
        self.ctx.set_run_status(
            "observing", hint=f"failback abort {self.ctx.run_id} switches back until "
            + time.strftime("%H:%M:%S", time.localtime(float(until))),
        )  # fmt: skip
        self.ctx.journal.add_event(
            "run.observing", f"observing {self.ctx.service_name} for {window:g}s; undo possible",
            run_id=self.ctx.run_id, service=self.ctx.service_name, step_id=self.spec.id,
            data={"undo_until": until},
        )  # fmt: skip
        site = _SiteWatch(self.ctx, home, self.spec.params.get("db"))
        tiers = _tier_watchers(self.ctx, home)
        next_tiers = 0.0
        try:
            while True:
                if self.ctx.abort_requested():
                    self._switch_back(site, "aborted by request during the observation window")
                site.poll()
                problem = site.problem()
                if problem is None and time.monotonic() >= next_tiers:
                    next_tiers = time.monotonic() + TIER_EVERY_S
                    problem = next((p for p in (w() for w in tiers) if p), None)
                if problem:
                    self.ctx.measure("observation.failed_gate", 1.0, note=problem)
                    self._switch_back(site, problem)
                left = float(until) - time.time()
                if left <= 0 and not site.in_doubt():
                    break
                self.ctx.progress(
                    f"undo possible for {max(left, 0):.0f}s more", min(1 - left / window, 1.0)
                )
                time.sleep(OBSERVE_POLL_S)
        finally:
            site.close()
        self.ctx.set_run_status("running")
        self.ctx.journal.add_event(
            "run.committed", f"{self.ctx.service_name}: observation window passed, committed",
            run_id=self.ctx.run_id, service=self.ctx.service_name, step_id=self.spec.id,
        )  # fmt: skip
        return {"committed_at": time.time()}

    def _switch_back(self, site: _SiteWatch, reason: str) -> None:
        """Decide how to switch back (the new primary alive or dead), then raise."""
        dead = site.primary_down()
        how = "failover" if dead else "switchover"
        if dead:
            also = "" if dead in reason else f"; the new primary is down too ({dead})"
            reason = f"{reason}{also}: switching back by unplanned failover"
        self.ctx.remember(
            "switch_back", {"how": how, "why": reason, "site": site.site, "at": time.time()}
        )
        # failback.plan.revert.revert_steps builds the way back from this step's params
        # plus these (the decision is journaled with the steps it appends)
        raise RevertRequested(reason, {"switch_back": how})


class _SiteWatch:
    """The monitor's own probes of one site, judged as the monitor judges them.

    Components at the site outside the traffic layer (``failback.observe.probes``: driver
    observation,
    ``policy.detection`` interval, timeout and threshold) and the checks declared for
    the site. Each probe runs in a thread on its own clock; one that exceeds its timeout
    counts as failed at once, and is not started again while it hangs. The database of
    the site must answer as a primary. Its last good position is journaled
    (``last_primary``) so that an unplanned switch back reports what may be lost.
    """

    def __init__(self, ctx: Any, site: str, db: str | None) -> None:
        self.ctx = ctx
        self.site = site
        probes = [
            p
            for p in build_probes(ctx.service_name, ctx.service, ctx.hosts)
            if p.site == site and not p.is_traffic_layer
        ]
        self.db_key = f"{db}@{site}" if db else None
        self.health = {p.key: ProbeHealth(p) for p in probes}
        self.due = {p.key: 0.0 for p in probes}
        self.inflight: dict[str, tuple[Any, float]] = {}
        self.pool = ThreadPoolExecutor(max(1, len(probes)), thread_name_prefix="observe")
        self.saved_at = 0.0

    def poll(self) -> None:
        """Start the probes that are due, record the results that came in."""
        now = time.monotonic()
        for key, health in self.health.items():
            probe = health.probe
            running = self.inflight.get(key)
            if running is not None:
                future, deadline = running
                if future.done():
                    del self.inflight[key]
                    health.record(self._judge(key, future))
                elif now >= deadline:  # hung: a failure now, and every interval it stays hung
                    health.record(_failure(f"timed out after {probe.timeout:g}s"))
                    self.inflight[key] = (future, deadline + probe.interval)
                continue
            if now >= self.due[key]:
                self.due[key] = now + probe.interval
                self.inflight[key] = (self.pool.submit(probe.run), now + probe.timeout)

    def _judge(self, key: str, future: Any) -> Any:
        try:
            result = future.result()
        except Exception as exc:  # a probe must not end the window
            return _failure(f"{type(exc).__name__}: {exc}")
        if key != self.db_key or not result.ok:
            return result
        role = result.observation.role if result.observation is not None else "unknown"
        if role != "primary":
            return _failure(f"{role}, not the primary: {result.detail}")
        self._remember_position(result.observation)
        return result

    def _remember_position(self, obs: Any) -> None:
        lsn = obs.data.get("current_lsn") if reports_wal_position(obs) else None
        if not lsn or time.monotonic() - self.saved_at < 1.0:
            return
        self.saved_at = time.monotonic()
        self.ctx.journal.update_service_data(
            self.ctx.service_name, self.ctx.service.primary_site,
            last_primary={"site": self.site, "lsn": lsn, "at": obs.observed_at},
        )  # fmt: skip

    def problem(self) -> str | None:
        """What is declared failed at the site, or None."""
        failed = [h for h in self.health.values() if h.failed]
        if not failed:
            return None
        return f"{self.site} failed during the observation window: " + "; ".join(
            f"{h.probe.key}: {h.last.detail if h.last else '?'}" for h in failed
        )

    def in_doubt(self) -> bool:
        """A probe is failing but not declared failed yet: do not commit on a coin toss."""
        return any(h.consecutive_failures for h in self.health.values())

    def primary_down(self) -> str | None:
        """Why the site's database cannot be switched away from cleanly, or None: it is
        failing, or a fresh look (bounded by its timeout) finds no reachable primary."""
        health = self.health.get(self.db_key or "")
        if health is None:
            return None
        if health.consecutive_failures and health.last is not None:
            return health.last.detail
        if self.db_key in self.inflight:
            future, _ = self.inflight.pop(self.db_key)
        else:
            future = self.pool.submit(health.probe.run)
        try:
            future.result(timeout=health.probe.timeout)
        except Exception:
            return f"no answer within {health.probe.timeout:g}s"
        result = self._judge(self.db_key or "", future)
        return None if result.ok else str(result.detail)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _failure(detail: str) -> Any:
    return ProbeResult(ok=False, detail=detail, at=time.time(), duration_s=0.0)


def _tier_watchers(ctx: Any, home: str) -> list[Any]:
    """One check per stateless tier: its site ``home`` keeps passing the traffic gate's
    thresholds (its driver judges the traffic: ``Capability.TRAFFIC_HEALTH``)."""
    thresholds = ctx.service.policy.traffic_gate
    watchers = []
    for name, component in components_with_role(ctx.service, Role.TIER):
        if home not in component.sites or not has_capability(component, Capability.TRAFFIC_HEALTH):
            continue
        problems_since_start = driver_of(component).traffic_watch(component, home, thresholds)

        def watch(problems: Any = problems_since_start, name: str = name) -> str | None:
            seen = problems()
            if not seen:
                return None
            return f"{name} at {home} failed during the observation window: " + "; ".join(seen)

        watchers.append(watch)
    return watchers


GATES: dict[str, type[Action]] = {
    CleanRoomGate.name: CleanRoomGate,
    ClearIncidentMark.name: ClearIncidentMark,
    ApprovalGate.name: ApprovalGate,
    ChecksGate.name: ChecksGate,
    StabilityGate.name: StabilityGate,
    RecordActiveSite.name: RecordActiveSite,
    ObservationGate.name: ObservationGate,
}
"""The engine's own actions (gates and bookkeeping), by name."""
