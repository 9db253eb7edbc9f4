"""What the monitor watches: one probe per component and site, one per declared check.

A probe is a blocking function (the drivers' observers and ``run_check`` are
synchronous) plus the timing that judges it: interval, timeout and failure
threshold. ``ProbeHealth`` keeps the consecutive-failure count that declares a
component failed, the moments it started passing or failing, and the last results
that ``failback status`` shows.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from failback.config import Service
from failback.drivers.base import Role, observing_within
from failback.drivers.catalog import role_of
from failback.drivers.kept import Kept, keeping
from failback.hosts import Host, HostSet
from failback.model.observed import ComponentObservation
from failback.observe.checks import run_check
from failback.observe.service import observe_component, observe_component_at_hand

PROBE_BUDGET = 0.8
"""The share of a probe's timeout its observation may spend on optional parts."""

SHARE_OF_INTERVAL = 0.1
"""How recent (a share of the probe's interval) another probe's answer from the same
server must be for this probe to use it (``failback.drivers.kept``): what a probe
reports is at most this much older than its own question's answer would be."""

HISTORY = 10
"""Results kept per probe for ``failback status``."""

TRAFFIC_ROLES = frozenset({Role.ROUTER, Role.POOL, Role.TIER})
"""Roles of the shared traffic layer (routers, pools, stateless tiers' balancers): their
failure is not a failure of the site they send clients to."""


@dataclass(frozen=True)
class ProbeResult:
    """One attempt: passed or not, why, when, how long it took."""

    ok: bool
    detail: str
    at: float
    duration_s: float
    observation: ComponentObservation | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Probe:
    """One thing to watch and how to judge it."""

    key: str
    kind: str  # "component" | "check"
    site: str | None
    component: str | None
    driver: str
    interval: float
    timeout: float
    threshold: int
    run: Callable[[], ProbeResult] = field(compare=False, repr=False)
    precheck: bool = True
    """Counts for the stability window of the primary site (as the run's own gate)."""
    role: str | None = None
    """The component's role (``Role``); None for a declared check."""
    recheck_interval: float | None = None
    """The interval after a failed attempt, until ``threshold`` failures in a row (a
    failure is confirmed quickly); None: ``interval`` always."""
    at_hand: Callable[[], ProbeResult | None] | None = field(
        default=None, compare=False, repr=False
    )
    """The attempt's result from an answer another probe received a moment ago, or None
    (then ``run``): never blocks, never a failure. The scheduler tries it on its event
    loop first, so that probes of a server many services share cost no thread."""

    def next_interval(self, failures: int) -> float:
        """How long after an attempt the next one starts, given the failures in a row so
        far: ``recheck_interval`` while a failure is being confirmed, else ``interval``."""
        if 0 < failures < self.threshold and self.recheck_interval is not None:
            return min(self.recheck_interval, self.interval)
        return self.interval

    @property
    def is_traffic_layer(self) -> bool:
        """A router, pool or tier probe: the shared traffic layer, not the site."""
        return self.kind == "component" and self.role in TRAFFIC_ROLES


@dataclass
class ProbeHealth:
    """The judged state of one probe: consecutive failures, since when, recent results."""

    probe: Probe
    consecutive_failures: int = 0
    passing_since: float | None = None
    failing_since: float | None = None
    last: ProbeResult | None = None
    history: deque[ProbeResult] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _history_records: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=HISTORY), repr=False
    )
    """``history`` as ``to_dict`` shows it, each result's made once when recorded (not
    again for each of the ten saves it is part of)."""

    def record(self, result: ProbeResult) -> bool:
        """Take one result; True when the probe's judged status changed."""
        before = self.status
        self.last = result
        self.history.append(result)
        self._history_records.append(
            {
                "at": result.at,
                "ok": result.ok,
                "s": round(result.duration_s, 4),
                "detail": result.detail[:160],
            }
        )
        if result.ok:
            self.consecutive_failures = 0
            self.failing_since = None
            if self.passing_since is None:
                self.passing_since = result.at
        else:
            self.consecutive_failures += 1
            self.passing_since = None  # any failed check restarts the stability window
            if self.failing_since is None:
                self.failing_since = result.at
        return self.status != before

    @property
    def failed(self) -> bool:
        """Declared failed: ``threshold`` consecutive failed attempts."""
        return self.consecutive_failures >= self.probe.threshold

    @property
    def status(self) -> str:
        if self.last is None:
            return "unknown"
        if self.failed:
            return "failed"
        return "failing" if self.consecutive_failures else "passing"

    def to_dict(self) -> dict[str, Any]:
        """What the journal keeps for ``failback status`` (another process reads it)."""
        p = self.probe
        return {
            "kind": p.kind,
            "component": p.component,
            "site": p.site,
            "driver": p.driver,
            "interval_s": p.interval,
            "timeout_s": p.timeout,
            "threshold": p.threshold,
            "status": self.status,
            "consecutive_failures": self.consecutive_failures,
            "passing_since": self.passing_since,
            "failing_since": self.failing_since,
            "last_detail": self.last.detail if self.last else None,
            "last_at": self.last.at if self.last else None,
            "history": list(self._history_records),
        }


def build_probes(
    service_name: str, service: Service, hosts: HostSet, kept: Kept | None = None
) -> list[Probe]:
    """Every component at every site (its driver's observation) and every declared check.

    ``kept``: connections the observations may keep open between attempts, and answers
    they may share (the monitor's: one for all its services; ``failback.drivers.kept``);
    None: every observation connects afresh and asks for itself.
    """
    probes: list[Probe] = []
    detection = service.policy.detection
    share_within = SHARE_OF_INTERVAL * float(detection.interval)
    for name, component in service.components.items():
        for site in component.sites:
            probes.append(
                Probe(
                    key=f"{name}@{site}",
                    kind="component",
                    site=site,
                    component=name,
                    driver=component.driver,
                    interval=float(detection.interval),
                    timeout=float(detection.timeout),
                    threshold=int(detection.failure_threshold),
                    recheck_interval=float(detection.recheck_interval),
                    run=_observer(
                        hosts,
                        service_name,
                        name,
                        component,
                        site,
                        float(detection.timeout),
                        keep=kept,
                        share_within=share_within,
                    ),
                    role=role_of(component).value,
                    at_hand=_at_hand(
                        service_name,
                        name,
                        component,
                        site,
                        keep=kept,
                        share_within=share_within,
                    ),
                )
            )
    for check in service.checks:
        probes.append(
            Probe(
                key=f"check:{check.name}",
                kind="check",
                site=check.site,
                component=getattr(check, "component", None),
                driver=check.type,
                interval=float(check.interval),
                timeout=float(check.timeout),
                threshold=int(check.failure_threshold),
                run=_checker(check, service, hosts.local()),
                precheck="precheck" in check.use,
            )
        )
    return probes


def _observer(
    hosts: HostSet,
    service_name: str,
    name: str,
    component: Any,
    site: str,
    timeout: float,
    *,
    keep: Kept | None,
    share_within: float,
) -> Callable[[], ProbeResult]:
    def run() -> ProbeResult:
        started = time.monotonic()
        # what the probe must answer is whether the component serves: its optional
        # parts (a database's files over SSH) get what is left of the probe's timeout
        with (
            observing_within(PROBE_BUDGET * timeout),
            keeping(keep, share_within=share_within),
        ):
            obs = observe_component(hosts, service_name, name, component, site)
        return ProbeResult(
            ok=obs.healthy,
            detail=f"{obs.role}: {obs.detail}" if obs.detail else obs.role,
            at=time.time(),
            duration_s=time.monotonic() - started,
            observation=obs,
        )

    return run


def _at_hand(
    service_name: str,
    name: str,
    component: Any,
    site: str,
    *,
    keep: Kept | None,
    share_within: float,
) -> Callable[[], ProbeResult | None] | None:
    """The probe's ``at_hand``: None without a ``Kept`` (nothing is shared)."""
    if keep is None or share_within <= 0:
        return None

    def at_hand() -> ProbeResult | None:
        started = time.monotonic()
        with keeping(keep, share_within=share_within):
            obs = observe_component_at_hand(service_name, name, component, site)
        if obs is None or not obs.healthy:
            # never a failure from someone else's answer: the probe asks itself
            return None
        return ProbeResult(
            ok=True,
            detail=f"{obs.role}: {obs.detail}" if obs.detail else obs.role,
            at=time.time(),
            duration_s=time.monotonic() - started,
            observation=obs,
        )

    return at_hand


def _checker(check: Any, service: Service, host: Host) -> Callable[[], ProbeResult]:
    def run() -> ProbeResult:
        result = run_check(check, service, host)
        return ProbeResult(
            ok=result.ok, detail=result.detail, at=time.time(), duration_s=result.duration_s
        )

    return run


@dataclass(frozen=True)
class HealthView:
    """A copy of one probe's health taken on the event loop, safe to read in a thread."""

    probe: Probe
    status: str
    failed: bool
    passing_since: float | None
    failing_since: float | None
    last: ProbeResult | None
    record: dict[str, Any] | None
    """What the journal keeps (``ProbeHealth.to_dict``); None when not asked for."""

    @classmethod
    def of(cls, health: ProbeHealth, *, record: bool = True) -> HealthView:
        return cls(
            probe=health.probe,
            status=health.status,
            failed=health.failed,
            passing_since=health.passing_since,
            failing_since=health.failing_since,
            last=health.last,
            record=health.to_dict() if record else None,
        )

    @property
    def observation(self) -> ComponentObservation | None:
        return self.last.observation if self.last else None
