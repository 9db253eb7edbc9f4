"""What the monitor plans its failover from: its probes' last observations, when fresh."""

from __future__ import annotations

import pytest

from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation
from failback.monitor.probe_state import state_from_probes
from failback.observe.probes import HealthView, Probe, ProbeHealth, ProbeResult
from failback.plan.planners import plan_failover
from tests.unit.test_planner import state, topology

NOW = 1_000_000.0


def views_of(
    observed: dict[str, ComponentObservation | None], *, age: float = 0.1, timed_out: bool = True
) -> dict:
    """One probe per ``component@site``; None stands for an attempt that timed out."""
    out: dict[str, HealthView] = {}
    roles = {"db": "database", "router": "router"}
    for key, obs in observed.items():
        component, site = key.split("@")
        probe = Probe(
            key=key, kind="component", site=site, component=component,
            driver="postgres" if component == "db" else "haproxy",
            interval=0.5, timeout=1.0, threshold=3, run=lambda: None,  # type: ignore[arg-type,return-value]
            role=roles[component],
        )  # fmt: skip
        health = ProbeHealth(probe)
        if obs is not None:
            obs = obs.model_copy(update={"observed_at": NOW - age})
        health.record(
            ProbeResult(
                ok=obs is not None and obs.healthy,
                detail="timed out after 1s" if obs is None else obs.role,
                at=NOW - age,
                duration_s=0.01,
                observation=obs,
                timed_out=obs is None and timed_out,
            )
        )
        out[key] = HealthView.of(health)
    return out


def observed(dc1_db: ComponentObservation | None) -> dict[str, ComponentObservation | None]:
    base = {
        f"{o.component}@{o.site}": o
        for o in state("dc1", ("down", False), ("standby", True)).components
    }
    base["db@dc1"] = dc1_db
    return base


def test_a_dead_primary_that_never_answered_is_planned_as_down() -> None:
    """The failed site's database probe timed out (no observation at all): it stands
    for a database that is down, and the failover is planned without observing again."""
    topo = topology()
    got = state_from_probes("app", topo.service("app"), views_of(observed(None)), {},
                            failed_site="dc1", now=NOW)  # fmt: skip
    assert got is not None
    db1 = got.get("db", "dc1")
    assert db1 is not None and db1.role == "down" and not db1.healthy
    assert "no answer" in db1.detail and db1.data["probe_timed_out"] is True
    assert got.active_site == "dc1"  # nothing recorded: the primary site
    plan = plan_failover("app", topo.service("app"), got)
    assert plan.to_site == "dc2" and any(s.id == "promote-dc2" for s in plan.steps)


def test_recorded_facts_come_from_the_journal() -> None:
    topo = topology()
    recorded = {"active_site": "dc1", "needs_resync": ["dc2"], "sync_mode": {"mode": "sync"}}
    got = state_from_probes("app", topo.service("app"), views_of(observed(None)), recorded,
                            failed_site="dc1", now=NOW)  # fmt: skip
    assert got is not None
    assert got.needs_resync == ["dc2"] and got.sync_mode == {"mode": "sync"}


def test_a_stale_picture_of_the_site_to_take_over_is_not_planned_from() -> None:
    """dc2 last observed 10 s ago (its probe hangs, say): observe afresh instead."""
    topo = topology()
    got = state_from_probes("app", topo.service("app"), views_of(observed(None), age=10.0), {},
                            failed_site="dc1", now=NOW)  # fmt: skip
    assert got is None


def test_a_missing_observation_other_than_the_failed_database_is_not_guessed() -> None:
    topo = topology()
    views = views_of({**observed(None), "router@dc2": None})
    assert state_from_probes("app", topo.service("app"), views, {}, failed_site="dc1",
                             now=NOW) is None  # fmt: skip


def test_an_answering_failed_primary_keeps_what_it_said() -> None:
    """A real observation of the failed site is used as it is (a healthy primary there
    makes the planner refuse an unplanned failover, as a fresh observation would)."""
    topo = topology()
    alive = ComponentObservation(component="db", site="dc1", driver="postgres", healthy=True,
                                 role="primary", data={"system_identifier": 7})  # fmt: skip
    got = state_from_probes("app", topo.service("app"), views_of(observed(alive)), {},
                            failed_site="dc1", now=NOW)  # fmt: skip
    assert got is not None
    db1 = got.get("db", "dc1")
    assert db1 is not None and db1.role == "primary" and db1.healthy
    with pytest.raises(PlanRefused, match="healthy"):
        plan_failover("app", topo.service("app"), got)


def test_a_probe_that_failed_with_an_error_is_not_taken_for_a_dead_database() -> None:
    """No observation, but not cut off by its timeout (the probe raised): nothing is
    known of the database, so the monitor observes afresh."""
    topo = topology()
    views = views_of(observed(None), timed_out=False)
    assert state_from_probes("app", topo.service("app"), views, {}, failed_site="dc1",
                             now=NOW) is None  # fmt: skip
