"""Shifting a stateless tier's traffic between sites by weight, and judging each step.

The judge reads HAProxy's own per-server statistics (responses by status class,
average response time, health-check status) over the step's bake time, the declared
http checks and, optionally, a Prometheus instant query. A verdict carries its numbers
so a rolled-back run's report says exactly why.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from failback.drivers.haproxy.facts import RouterTarget
from failback.drivers.haproxy.server_state import ServerStats

RESPONSE_CLASSES = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


def set_split(target_of: dict[str, RouterTarget], to_site: str, percent: int) -> dict[str, int]:
    """``percent`` of the traffic to ``to_site``, the rest to the other site(s)."""
    others = [s for s in target_of if s != to_site]
    weights = {to_site: percent}
    rest = 100 - percent
    for index, site in enumerate(others):
        weights[site] = rest // len(others) + (1 if index < rest % len(others) else 0)
    any_target = next(iter(target_of.values()))
    router = any_target.router()
    # raise the receiving side first: a step never passes through "nobody gets traffic"
    order = sorted(weights, key=lambda s: -weights[s])
    for site in order:
        target = target_of[site]
        if weights[site] > 0:
            router.set_state(target.backend, target.server, "ready")
        router.set_weight(target.backend, target.server, weights[site])
    return weights


def current_split(target_of: dict[str, RouterTarget]) -> dict[str, int]:
    any_target = next(iter(target_of.values()))
    states = any_target.router().server_states(any_target.backend)
    return {
        site: (states[t.server].weight if states[t.server].admin_state == "ready" else 0)
        for site, t in target_of.items()
        if t.server in states
    }


@dataclass
class Counters:
    responses: int
    errors: int

    @classmethod
    def of(cls, stats: ServerStats) -> Counters:
        responses = sum(int(stats.raw.get(k) or 0) for k in RESPONSE_CLASSES)
        return cls(responses=responses, errors=int(stats.raw.get("hrsp_5xx") or 0))


@dataclass
class Verdict:
    """The numbers a gate saw, and whether they pass."""

    site: str
    percent: int
    responses: int = 0
    errors: int = 0
    error_ratio: float | None = None
    response_ms: int | None = None
    check_status: str = ""
    server_status: str = ""
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def server_stats(target: RouterTarget) -> ServerStats:
    for row in target.router().stats(target.backend):
        if row.server == target.server:
            return row
    raise KeyError(target.server)


def judge(
    verdict: Verdict, before: Counters, stats: ServerStats, *, max_error_ratio: float,
    max_response_ms: int, min_requests: int,
) -> Verdict:  # fmt: skip
    """Fill ``verdict`` from the counters since ``before`` and the server's state now."""
    now = Counters.of(stats)
    verdict.responses = now.responses - before.responses
    verdict.errors = now.errors - before.errors
    verdict.error_ratio = (
        round(verdict.errors / verdict.responses, 4) if verdict.responses else None
    )
    verdict.response_ms = int(stats.rtime)
    verdict.check_status = stats.raw.get("check_status", "")
    verdict.server_status = stats.status
    verdict.problems = []
    if stats.status.upper().startswith("DOWN"):
        verdict.problems.append(
            f"health check of {verdict.site} fails ({verdict.check_status or stats.status})"
        )
    if (
        verdict.error_ratio is not None
        and verdict.responses >= max(min_requests, 1)
        and verdict.error_ratio > max_error_ratio
    ):
        verdict.problems.append(
            f"5xx ratio {verdict.error_ratio:.3f} ({verdict.errors} of {verdict.responses}"
            f" responses) > {max_error_ratio:g}"
        )
    if verdict.responses and verdict.response_ms > max_response_ms:
        verdict.problems.append(
            f"average response time {verdict.response_ms} ms > {max_response_ms} ms"
        )
    return verdict


def prometheus_value(url: str, query: str, timeout: float) -> float:
    """First sample of an instant query (GET /api/v1/query)."""
    full = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(full, timeout=timeout) as response:
        doc = json.load(response)
    if doc.get("status") != "success":
        raise ValueError(f"Prometheus answered {doc.get('status')}: {doc.get('error')}")
    result = doc["data"]["result"]
    if doc["data"]["resultType"] == "scalar":
        return float(result[1])
    if not result:
        raise ValueError(f"Prometheus returned no sample for {query!r}")
    return float(result[0]["value"][1])


def wait_and_judge(
    target: RouterTarget, verdict: Verdict, *, bake_s: float, thresholds: Any,
    progress: Any, poll_s: float = 0.25, stop: Any = None,
) -> Verdict:  # fmt: skip
    """Bake: watch the counters; stop early as soon as the numbers already fail."""
    before = Counters.of(server_stats(target))
    started = time.monotonic()
    while True:
        stats = server_stats(target)
        judge(
            verdict, before, stats, max_error_ratio=thresholds.max_error_ratio,
            max_response_ms=thresholds.max_response_ms, min_requests=thresholds.min_requests,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        ratio = "-" if verdict.error_ratio is None else f"{verdict.error_ratio:.3f}"
        progress(
            f"{verdict.site} at {verdict.percent}%: {verdict.responses} responses, 5xx {ratio},"
            f" {verdict.response_ms} ms, check {verdict.check_status or '-'}",
            min(elapsed / bake_s, 1.0) if bake_s else None,
        )
        if not verdict.ok or elapsed >= bake_s:
            return verdict
        if stop is not None:
            stop()
        time.sleep(poll_s)
