"""Plan steps performed on the HAProxy router: fence a site, route writes to a site.

The router is fenced first and unfenced last: no client reaches a database that is
being stopped, and none reaches the new primary before it is promoted.
"""

from __future__ import annotations

import time
from typing import Any

from failback.drivers.base import AbortRequested, Action, StepContext
from failback.drivers.haproxy.facts import RouterTarget, router_target
from failback.drivers.haproxy.traffic import (
    Verdict,
    current_split,
    prometheus_value,
    set_split,
    wait_and_judge,
)
from failback.errors import FailbackError, StepFailed
from failback.model.plan import StepSpec


def _target(spec: StepSpec, ctx: StepContext) -> RouterTarget:
    if spec.component is None or spec.site is None:
        raise FailbackError(f"step {spec.id}: a router step needs a component and a site")
    return router_target(ctx.service.components[spec.component], spec.site)


class RouterFence(Action):
    """Put the site's server in maint and close its sessions: no client reaches it.

    With ``stop_writes`` the moment is remembered: it is when writes start being
    refused, the start of the write-unavailability the run reports.
    """

    name = "haproxy.fence"

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.target = _target(spec, ctx)
        self.has_undo = spec.params.get("undo") in ("route", "restore")

    def check(self) -> bool:
        state = self.target.router().server_state(self.target.backend, self.target.server)
        return not state.takes_new_sessions and state.current_sessions == 0

    def apply(self) -> dict[str, Any] | None:
        router = self.target.router()
        if self.spec.params.get("undo") == "restore":
            before = router.server_state(self.target.backend, self.target.server)
            self.ctx.remember(f"router_took_traffic.{self.spec.site}", before.takes_new_sessions)
        if self.spec.params.get("stop_writes"):
            self.ctx.writes_stopped(self.spec.site or "")
        router.fence(self.target.backend, self.target.server)
        return {"fenced": f"{self.target.backend}/{self.target.server}"}

    def verify(self) -> None:
        state = self.target.router().server_state(self.target.backend, self.target.server)
        if state.takes_new_sessions:
            raise StepFailed(
                f"{self.target.backend}/{self.target.server} still takes new sessions after"
                f" the fence ({state.admin_state})"
            )
        # applied now or found in place: the site's database fence may rely on it
        self.ctx.remember(f"entry_fenced.{self.spec.site}", True)

    def undo(self) -> dict[str, Any] | None:
        """Send traffic back to the site ("route"), or only if it had traffic ("restore")."""
        if self.spec.params.get("undo") == "restore" and not self.ctx.values.get(
            f"router_took_traffic.{self.spec.site}"
        ):
            return {"routed": None}
        self.target.router().route_to(self.target.backend, self.target.server)
        self.ctx.writes_restored(self.spec, time.time())
        return {"routed": f"{self.target.backend}/{self.target.server}"}


class RouterRoute(Action):
    """Send the service's writes to the site's server, and to no other."""

    name = "haproxy.route"

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.target = _target(spec, ctx)

    def check(self) -> bool:
        done = self.target.router().write_target(self.target.backend) == self.target.server
        if done and self.ctx.writes_resume_unrecorded(self.spec.site or ""):
            # routed before an interruption: the end is known only to be before now
            self.ctx.writes_resumed(self.spec, time.time(), interrupted=True)
        return done

    def apply(self) -> dict[str, Any] | None:
        self.target.router().route_to(self.target.backend, self.target.server)
        self.ctx.writes_resumed(self.spec, time.time())
        return {"write_target": self.target.server}

    def verify(self) -> None:
        target = self.target.router().write_target(self.target.backend)
        if target != self.target.server:
            raise StepFailed(
                f"router sends writes to {target!r}, not {self.target.server!r}",
                hint="look at `show servers state` on the HAProxy socket",
            )


def _tier_targets(spec: StepSpec, ctx: StepContext) -> dict[str, RouterTarget]:
    if spec.component is None:
        raise FailbackError(f"step {spec.id}: a traffic step needs a component")
    component = ctx.service.components[spec.component]
    return {site: router_target(component, site) for site in component.sites}


class TrafficShift(Action):
    """Give ``params.percent`` of a stateless tier's traffic to ``spec.site``.

    Undo sends all of it back to ``params.away`` at once: the rollback of a failed
    traffic step.
    """

    name = "haproxy.traffic"
    has_undo = True

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.targets = _tier_targets(spec, ctx)
        self.percent = int(spec.params["percent"])

    def check(self) -> bool:
        split = current_split(self.targets)
        total = sum(split.values())
        return bool(total) and round(100 * split.get(self.spec.site or "", 0) / total) == (
            self.percent
        )

    def apply(self) -> dict[str, Any] | None:
        weights = set_split(self.targets, self.spec.site or "", self.percent)
        self.ctx.remember(f"traffic.{self.spec.component}", weights)
        self.ctx.measure(
            f"traffic.{self.spec.component}.{self.spec.site}_percent", self.percent, "%"
        )
        return {"weights": weights}

    def undo(self) -> dict[str, Any] | None:
        away = str(self.spec.params["away"])
        weights = set_split(self.targets, away, 100)
        self.ctx.remember(f"traffic.{self.spec.component}", weights)
        return {"weights": weights}


class TrafficGateStep(Action):
    """Bake a traffic step and judge it from HAProxy's statistics, http checks, Prometheus.

    The verdict's numbers are recorded as measurements whether it passes or not, so a
    rolled-back run's report shows the offending ones.
    """

    name = "gate.traffic"

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        self.targets = _tier_targets(spec, ctx)

    def apply(self) -> dict[str, Any] | None:
        site = self.spec.site or ""
        percent = int(self.spec.params["percent"])
        thresholds = self.ctx.service.policy.traffic_gate
        verdict = wait_and_judge(
            self.targets[site], Verdict(site=site, percent=percent),
            bake_s=float(self.spec.params["bake_s"]), thresholds=thresholds,
            progress=self.ctx.progress, stop=self._stop_if_aborted,
        )  # fmt: skip
        for result in self.ctx.run_checks("http", site):
            verdict.extra[f"check.{result.name}"] = result.detail
            if not result.ok:
                verdict.problems.append(f"http check {result.name}: {result.detail}")
        if thresholds.prometheus is not None:
            self._prometheus(verdict, thresholds.prometheus, prometheus_value)
        prefix = f"traffic.{site}.{percent}pct"
        self.ctx.measure(f"{prefix}.responses", verdict.responses)
        self.ctx.measure(
            f"{prefix}.error_ratio",
            verdict.error_ratio,
            note=f"{verdict.errors} 5xx of {verdict.responses}",
        )
        self.ctx.measure(
            f"{prefix}.response_ms",
            verdict.response_ms,
            "ms",
            note=f"check {verdict.check_status or '-'}, {verdict.server_status}",
        )
        if not verdict.ok:
            raise StepFailed(
                f"traffic gate at {percent}% to {site} failed: " + "; ".join(verdict.problems),
                hint="traffic went back to the secondary site; fix the primary site's tier, "
                "then run the failback again",
            )
        return verdict.to_dict()

    def _stop_if_aborted(self) -> None:
        if self.ctx.abort_requested():
            raise AbortRequested("aborted by request")

    @staticmethod
    def _prometheus(verdict: Any, gate: Any, query: Any) -> None:
        try:
            value = query(gate.url, gate.query, gate.timeout)
        except Exception as exc:  # an unreachable signal fails the gate, it never passes it
            verdict.problems.append(f"Prometheus query failed: {exc}")
            return
        verdict.extra["prometheus"] = value
        if gate.max is not None and value > gate.max:
            verdict.problems.append(f"Prometheus {gate.query} = {value:g} > {gate.max:g}")
        if gate.min is not None and value < gate.min:
            verdict.problems.append(f"Prometheus {gate.query} = {value:g} < {gate.min:g}")
