"""Gates and bookkeeping steps every planner uses.

A gate is a step that waits: for a person's approval, for a site to be healthy for
a stability window, or for declared checks to pass.
"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.registry import observe_component
from failback.engine.actions import Action, register
from failback.engine.executor import WaitingForApproval
from failback.errors import StepFailed
from failback.monitor.checks import checks_for, run_check


@register
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


@register
class ChecksGate(Action):
    """Runs the service's declared checks of one kind; every failure is reported."""

    name = "gate.checks"

    def apply(self) -> dict[str, Any] | None:
        use = self.spec.params["use"]
        checks = checks_for(self.ctx.service, use, self.spec.site)
        results = [run_check(c, self.ctx.service, self.ctx.host) for c in checks]
        for result in results:
            self.ctx.measure(
                f"check.{result.name}.ok", 1.0 if result.ok else 0.0, note=result.detail
            )
        failed = [r for r in results if not r.ok]
        if failed:
            raise StepFailed(
                f"{len(failed)} of {len(results)} {use}s failed: "
                + "; ".join(f"{r.name}: {r.detail}" for r in failed),
                hint="fix what the check reports, then run the command again",
            )
        return {"checks": [r.to_dict() for r in results]}


@register
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
                if site not in component.sites or _stateless(component):
                    continue
                seen = observe_component(
                    self.ctx.host, self.ctx.service_name, name, component, site
                )
                if not seen.healthy:
                    problems.append(f"{name}: {seen.detail}")
            for check in checks:
                result = run_check(check, self.ctx.service, self.ctx.host)
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


def _stateless(component: Any) -> bool:
    """A stateless tier is judged under traffic by the traffic gates, not by stability."""
    return getattr(getattr(component, "options", None), "tier", "database") == "stateless"


@register
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


@register
class ObservationGate(Action):
    """After the switch, watch the service for the observation window before committing.

    Until the window passes the failback can be undone: ``failback abort`` or a failed
    gate (a stateless tier failing at the primary site) raises RevertRequested and the
    executor switches back with the same zero-loss switchover. When the window
    passes, the run commits.
    """

    name = "gate.observation"

    def check(self) -> bool:
        until = self.ctx.values.get("undo_until")
        return (
            until is not None and time.time() >= float(until) and not (self.ctx.abort_requested())
        )

    def apply(self) -> dict[str, Any] | None:
        from failback.engine.executor import RevertRequested

        window = float(self.spec.params["window_s"])
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
        watchers = _tier_watchers(self.ctx, str(self.spec.params["home"]))
        while True:
            if self.ctx.abort_requested():
                raise RevertRequested("aborted by request during the observation window")
            for watcher in watchers:
                problem = watcher()
                if problem:
                    self.ctx.measure("observation.failed_gate", 1.0, note=problem)
                    raise RevertRequested(problem)
            left = float(until) - time.time()
            if left <= 0:
                break
            self.ctx.progress(f"undo possible for {left:.0f}s more", 1 - left / window)
            time.sleep(min(0.5, max(left, 0.01)))
        self.ctx.set_run_status("running")
        self.ctx.journal.add_event(
            "run.committed", f"{self.ctx.service_name}: observation window passed, committed",
            run_id=self.ctx.run_id, service=self.ctx.service_name, step_id=self.spec.id,
        )  # fmt: skip
        return {"committed_at": time.time()}


def _tier_watchers(ctx: Any, home: str) -> list[Any]:
    """One check per stateless tier: its server at ``home`` keeps passing the gate."""
    from failback.drivers.haproxy.observation import router_target
    from failback.drivers.haproxy.traffic import Counters, Verdict, judge, server_stats

    thresholds = ctx.service.policy.traffic_gate
    watchers = []
    for name, component in ctx.service.components.items():
        if not _stateless(component) or home not in component.sites:
            continue
        target = router_target(component, home)
        before = Counters.of(server_stats(target))

        def watch(target: Any = target, before: Any = before, name: str = name) -> str | None:
            verdict = judge(
                Verdict(site=home, percent=100), before, server_stats(target),
                max_error_ratio=thresholds.max_error_ratio,
                max_response_ms=thresholds.max_response_ms,
                min_requests=thresholds.min_requests,
            )  # fmt: skip
            if verdict.ok:
                return None
            return f"{name} at {home} failed during the observation window: " + "; ".join(
                verdict.problems
            )

        watchers.append(watch)
    return watchers
