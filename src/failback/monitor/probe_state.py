"""The service's state as the monitor's probes last saw it: what its own runs plan from.

A failover the monitor starts must not observe the service again before planning: the
failed site's observation would wait out a connect timeout a second time (2 s for a
dead address), inside the clients' outage. The probes observed every component at
every site through the same drivers moments ago, so the plan is made from that,
provided it is fresh: every probe of a component has a result, and the site to take
over was observed within two of its probe's intervals and its timeout.

A database probe of the failed site that got no answer at all (cut off by its
timeout, so there is no observation) stands for a database that is down. Only a
server that does not answer its clients' protocol gets there: a probe's observation
never waits past its timeout for optional parts (the machine over SSH, see
``drivers.base.observing_within``), so a serving database behind a slow sshd is
observed serving. Any other missing observation makes the monitor observe afresh,
as a person's run does.
"""

from __future__ import annotations

import time
from typing import Any

from failback.config import Service
from failback.drivers.base import Role
from failback.model.observed import ComponentObservation, ServiceState
from failback.observe.probes import HealthView
from failback.observe.service import service_state


def fresh_for(view: HealthView) -> float:
    """How old a probe's observation may be to plan from: two of its intervals and its
    timeout (a probe that just started its next attempt, plus that attempt)."""
    return 2 * view.probe.interval + view.probe.timeout


def state_from_probes(
    service_name: str,
    service: Service,
    views: dict[str, HealthView],
    recorded: dict[str, Any],
    *,
    failed_site: str,
    now: float | None = None,
) -> ServiceState | None:
    """The state to plan a failover away from ``failed_site`` from, or None when the
    probes do not give a fresh enough picture (the caller then observes afresh)."""
    now = time.time() if now is None else now
    observations: list[ComponentObservation] = []
    for view in views.values():
        probe = view.probe
        if probe.kind != "component" or probe.component is None or probe.site is None:
            continue
        last = view.last
        if last is None:
            return None
        observation = view.observation
        if observation is None:
            # only an attempt cut off by its timeout says "no answer"; a probe that
            # failed otherwise (an error of its own) says nothing about the database
            failed_db = probe.site == failed_site and probe.role == Role.DATABASE.value
            if not (failed_db and last.timed_out):
                return None
            observation = _not_answering(probe.component, probe.site, probe.driver, last)
        elif probe.site != failed_site and now - observation.observed_at > fresh_for(view):
            return None
        observations.append(observation.model_copy(deep=True))
    if not observations:
        return None
    return service_state(service_name, service, recorded, observations)


def _not_answering(component: str, site: str, driver: str, last: Any) -> ComponentObservation:
    return ComponentObservation(
        component=component,
        site=site,
        driver=driver,
        healthy=False,
        kind=Role.DATABASE.value,
        role="down",
        detail=f"{site}: the monitor's probe got no answer ({last.detail})",
        observed_at=last.at,
        data={"probe_timed_out": True},
    )
