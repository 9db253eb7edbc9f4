"""Planner: pure functions from topology + observed state to a plan (no servers needed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failback.config import load_topology_text
from failback.model.state import ComponentObservation, ServiceState
from failback.plan.errors import PlanRefused
from failback.plan.planners import plan_failback, plan_failover

PG_TOPOLOGY = """\
sites:
  dc1: {}
  dc2: {}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        options: {user: failback, password: "env:PGPASSWORD", dbname: app}
        sites:
          dc1: {host: 127.0.0.1, port: 5432, pgdata: /srv/dc1}
          dc2: {host: 127.0.0.1, port: 5433, pgdata: /srv/dc2}
      router:
        driver: haproxy
        options: {socket: /run/haproxy.sock, backend: pg_write, endpoint: "127.0.0.1:6432"}
        sites:
          dc1: {server: dc1}
          dc2: {server: dc2}
    policy:
      approval: required
      stability_window: 10s
"""


def topology() -> Any:
    return load_topology_text(PG_TOPOLOGY, "/tmp/failback.yaml")


def state(
    active: str, dc1: tuple[str, bool], dc2: tuple[str, bool], sysids: tuple[int, int] = (7, 7)
) -> ServiceState:
    comps = []
    for site, (role, healthy), sysid in zip(("dc1", "dc2"), (dc1, dc2), sysids, strict=True):
        comps.append(
            ComponentObservation(
                component="db",
                site=site,
                driver="postgres",
                healthy=healthy,
                role=role,
                data={"system_identifier": sysid},
            )
        )
        comps.append(
            ComponentObservation(
                component="router",
                site=site,
                driver="haproxy",
                healthy=True,
                role="active" if site == active else "standby",
            )
        )
    return ServiceState(service="app", primary_site="dc1", active_site=active, components=comps)


def ids(plan: Any) -> list[str]:
    return [s.id for s in plan.steps]


def test_unplanned_failover_fences_before_promoting() -> None:
    topo = topology()
    plan = plan_failover(
        "app", topo.service("app"), state("dc1", ("down", False), ("standby", True))
    )
    order = ids(plan)
    assert order.index("fence-router-dc1") < order.index("promote-dc2")
    assert order.index("fence-db-dc1") < order.index("promote-dc2")
    assert order.index("promote-dc2") < order.index("route-router-dc2")
    assert plan.steps[order.index("promote-dc2")].point_of_no_return
    assert plan.steps[-1].params == {"active_site": "dc2", "needs_resync": ["dc1"]}


def test_unplanned_failover_refused_when_primary_healthy() -> None:
    topo = topology()
    with pytest.raises(PlanRefused) as refused:
        plan_failover(
            "app", topo.service("app"), state("dc1", ("primary", True), ("standby", True))
        )
    assert "--planned" in (refused.value.hint or "")


def test_forced_failover_is_planned_and_says_so() -> None:
    topo = topology()
    plan = plan_failover(
        "app", topo.service("app"), state("dc1", ("primary", True), ("standby", True)), force=True
    )
    assert any("--force" in note for note in plan.notes)


def test_planned_failover_is_a_zero_loss_switchover() -> None:
    topo = topology()
    plan = plan_failover(
        "app", topo.service("app"), state("dc1", ("primary", True), ("standby", True)), planned=True
    )
    order = ids(plan)
    assert (
        order.index("fence-router-dc1")
        < order.index("stop-dc1")
        < order.index("replay-dc2")
        < order.index("promote-dc2")
        < order.index("route-router-dc2")
    )
    assert "reprotect-dc1" in order


def test_failback_order_and_gates() -> None:
    topo = topology()
    plan = plan_failback(
        "app", topo.service("app"), state("dc2", ("stale-primary", True), ("primary", True))
    )
    order = ids(plan)
    assert order[0] == "fence-router-dc1"
    assert order.index("stability") < order.index("resync-dc1") < order.index("catchup-dc1")
    assert order.index("approve") < order.index("fence-router-dc2")
    assert order.index("replay-dc1") < order.index("promote-dc1") < order.index("route-router-dc1")
    assert order.index("route-router-dc1") < order.index("reprotect-dc2")
    stability = plan.steps[order.index("stability")]
    assert stability.params["window_s"] == 10.0


def test_failback_refused_when_already_home() -> None:
    topo = topology()
    with pytest.raises(PlanRefused, match="already runs at its primary site"):
        plan_failback(
            "app", topo.service("app"), state("dc1", ("primary", True), ("standby", True))
        )


def test_different_clusters_are_refused() -> None:
    topo = topology()
    with pytest.raises(PlanRefused, match="different PostgreSQL clusters"):
        plan_failover(
            "app",
            topo.service("app"),
            state("dc1", ("down", False), ("standby", True), sysids=(1, 2)),
        )


def test_plans_are_pure() -> None:
    topo = topology()
    observed = state("dc2", ("stale-primary", True), ("primary", True))
    a = plan_failback("app", topo.service("app"), observed)
    b = plan_failback("app", topo.service("app"), observed)
    assert a == b


ROLES = st.sampled_from(["primary", "standby", "down", "unknown", "stale-primary"])


@settings(max_examples=200, deadline=None)
@given(
    active=st.sampled_from(["dc1", "dc2"]),
    role1=ROLES,
    role2=ROLES,
    healthy1=st.booleans(),
    healthy2=st.booleans(),
    planned=st.booleans(),
    force=st.booleans(),
    kind=st.sampled_from(["failover", "failback"]),
)
def test_any_plan_fences_the_old_site_before_any_promotion(
    active: str,
    role1: str,
    role2: str,
    healthy1: bool,
    healthy2: bool,
    planned: bool,
    force: bool,
    kind: str,
) -> None:
    """Promise 1 at plan level: whatever is observed, a plan either refuses, or fences the
    site losing the role at the router before it promotes the other, and promotes only
    after the exact final position was replayed when the old primary was stopped cleanly."""
    topo = topology()
    observed = state(active, (role1, healthy1), (role2, healthy2))
    try:
        if kind == "failover":
            plan = plan_failover("app", topo.service("app"), observed, planned=planned, force=force)
        else:
            plan = plan_failback("app", topo.service("app"), observed)
    except PlanRefused as refused:
        assert refused.message
        return
    order = ids(plan)
    promotes = [i for i, s in enumerate(plan.steps) if s.action == "postgres.promote"]
    assert len(promotes) == 1
    old = plan.from_site
    assert order.index(f"fence-router-{old}") < promotes[0]
    if f"stop-{old}" in order:
        assert order.index(f"stop-{old}") < order.index(f"replay-{plan.to_site}") < promotes[0]
    routes = [i for i, s in enumerate(plan.steps) if s.action == "haproxy.route"]
    assert routes and all(r > promotes[0] for r in routes)


def test_failover_to_a_site_never_resynced_is_refused() -> None:
    """dc1 lost the primary role and was never resynced: promoting it loses dc2's writes."""
    topo = topology()
    observed = state("dc2", ("stale-primary", True), ("down", False))
    observed = observed.model_copy(update={"needs_resync": ["dc1"]})
    with pytest.raises(PlanRefused, match="not been resynced") as refused:
        plan_failover("app", topo.service("app"), observed)
    assert "--accept-data-loss" in (refused.value.hint or "")
    plan = plan_failover("app", topo.service("app"), observed, accept_data_loss=True)
    assert plan.to_site == "dc1"


def test_switch_back_steps_never_reuse_the_forward_switch_values() -> None:
    """The switch back of an observation window runs in the same run as the failback:
    its replay must wait for the position of the site it stops (not the one stopped
    by the forward switch), and its write-unavailability is measured under its own name."""
    from failback.plan.revert import revert_steps

    topo = topology()
    steps = revert_steps(topo.service("app"), {"home": "dc1", "away": "dc2", "db": "db"})
    ids = [s.id for s in steps]
    assert all(i.startswith("back-") for i in ids) and len(set(ids)) == len(ids)
    by_action = {s.action: s for s in steps}
    assert by_action["postgres.stop"].site == "dc1"
    assert by_action["postgres.wait_replay"].params["source"] == "dc1"
    assert by_action["postgres.promote"].site == "dc2"
    routes = [s for s in steps if s.params.get("measure_unavailability")]
    assert [s.params["measure_as"] for s in routes] == ["switch_back_write_unavailability_s"]
    assert all(s.params["from"] == "dc1" for s in steps if s.action.endswith(".route"))
