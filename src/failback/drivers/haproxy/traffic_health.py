"""A stateless tier's health under real traffic at one site (``Capability.TRAFFIC_HEALTH``).

The failback's observation window watches the new active site for a while after the
switch; for a stateless tier, "healthy" means what the traffic gates judge between
weighted steps: HAProxy's health check passes, the 5xx ratio and the average response
time since the window began stay within ``policy.traffic_gate``. The engine's gate
asks the driver for a watch and calls it now and then; it never reads HAProxy itself.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.base import TrafficWatch
from failback.drivers.haproxy.facts import router_target
from failback.drivers.haproxy.traffic import Counters, Verdict, judge, server_stats


def traffic_watch(settings: Any, site: str, thresholds: Any) -> TrafficWatch:
    """Start watching ``site``'s server of the tier; each call of the result returns the
    problems seen since the start (none while the site serves well)."""
    target = router_target(settings, site)
    before = Counters.of(server_stats(target))

    def problems() -> list[str]:
        verdict = judge(
            Verdict(site=site, percent=100), before, server_stats(target),
            max_error_ratio=thresholds.max_error_ratio,
            max_response_ms=thresholds.max_response_ms,
            min_requests=thresholds.min_requests,
        )  # fmt: skip
        return list(verdict.problems)

    return problems


class HaproxyTrafficHealth:
    """The driver's ``Capability.TRAFFIC_HEALTH`` method (mixed into ``HaproxyDriver``)."""

    def traffic_watch(self, settings: Any, site: str, thresholds: Any) -> TrafficWatch:
        return traffic_watch(settings, site, thresholds)
