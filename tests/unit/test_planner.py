"""Planner: pure functions from topology + observed state to a plan (no servers needed)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failback.config import load_topology_text
from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation, ServiceState
from failback.plan.planners import plan_failback, plan_failover
from failback.plan.revert import revert_steps

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
    assert order.index("stability") < order.index("capture-dc1") < order.index("resync-dc1")
    assert order.index("resync-dc1") < order.index("catchup-dc1")
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


SYNCHRONOUS_TOPOLOGY = PG_TOPOLOGY.replace(
    "      approval: required\n", "      approval: required\n      synchronous: true\n"
)
HEALTH = st.sampled_from([True] * 7 + [False])


@st.composite
def site_db(draw: Any, roles: list[str]) -> tuple[str, bool]:
    role = draw(st.sampled_from(roles))
    healthy = role in ("primary", "standby", "stale-primary") and draw(HEALTH)
    return role, healthy


@st.composite
def planning_cases(draw: Any) -> dict[str, Any]:
    """Observed states weighted towards the ones a planner meets (a primary where the
    service is active, a standby or a stale primary at the other site), with every
    combination still possible, and the inputs the promises hinge on varied: which
    sites need a resync, the synchronous mode last seen, a synchronous policy."""
    kind = draw(st.sampled_from(["failover", "failback"]))
    away_weighted = ["dc1"] + ["dc2"] * 7 if kind == "failback" else ["dc1", "dc2"]
    active = draw(st.sampled_from(away_weighted))
    other = "dc2" if active == "dc1" else "dc1"
    active_roles = ["primary"] * 5 + ["down", "unknown", "standby"]
    if kind == "failover":  # an unplanned failover is for a primary that is down
        active_roles = ["primary"] * 3 + ["down"] * 3 + ["unknown", "standby"]
    dbs = {
        active: draw(site_db(active_roles)),
        other: draw(site_db(["standby"] * 5 + ["stale-primary", "down", "primary"])),
    }
    mode = draw(st.sampled_from([None, "sync", "relaxed"]))
    return {
        "kind": kind,
        "active": active,
        "dc1": dbs["dc1"],
        "dc2": dbs["dc2"],
        "needs_resync": draw(st.sampled_from([[], [], [other], [active]])),
        "sync_mode": None
        if mode is None
        else {"mode": mode, "standby": draw(st.sampled_from([other, None]))},
        "synchronous": draw(st.booleans()),
        "planned": draw(st.booleans()),
        "force": draw(st.booleans()),
        "accept_data_loss": draw(st.sampled_from([False, False, False, True])),
    }


OUTCOMES: dict[str, int] = {"planned": 0, "refused": 0}


@settings(max_examples=300, deadline=None)
@given(case=planning_cases())
def test_any_plan_keeps_the_promises(case: dict[str, Any]) -> None:
    """Whatever is observed, a plan either refuses, or:

    * promise 1: fences the site losing the role at the router before it promotes the
      other, promotes once, routes writes only after the promotion;
    * promise 2: promotes only after the exact final position was replayed when the
      old primary is stopped cleanly, and a failback resyncs and catches up the
      returning site before it stops the current primary;
    * never promotes a site that needs a resync (unless --accept-data-loss), nor, for a
      synchronous service, a standby that was not synchronous (unless --force);
    * an unplanned failover records the site it left as needing a resync.
    """
    topo = load_topology_text(
        SYNCHRONOUS_TOPOLOGY if case["synchronous"] else PG_TOPOLOGY, "/tmp/failback.yaml"
    )
    observed = state(case["active"], case["dc1"], case["dc2"]).model_copy(
        update={"needs_resync": case["needs_resync"], "sync_mode": case["sync_mode"]}
    )
    service = topo.service("app")
    try:
        if case["kind"] == "failover":
            plan = plan_failover(
                "app", service, observed, planned=case["planned"], force=case["force"],
                accept_data_loss=case["accept_data_loss"],
            )  # fmt: skip
        else:
            plan = plan_failback("app", service, observed)
    except PlanRefused as refused:
        assert refused.message
        OUTCOMES["refused"] += 1
        return
    OUTCOMES["planned"] += 1
    order = ids(plan)
    old, new = plan.from_site, plan.to_site
    promotes = [i for i, s in enumerate(plan.steps) if s.action == "postgres.promote"]
    assert len(promotes) == 1 and plan.steps[promotes[0]].site == new
    assert order.index(f"fence-router-{old}") < promotes[0]
    if f"stop-{old}" in order:
        assert order.index(f"stop-{old}") < order.index(f"replay-{new}") < promotes[0]
    routes = [i for i, s in enumerate(plan.steps) if s.action == "haproxy.route"]
    assert routes and all(r > promotes[0] for r in routes)
    if plan.kind == "failover" and not case["accept_data_loss"]:  # a failback resyncs it
        assert new not in case["needs_resync"], (case, order)
    if plan.kind == "failback":
        assert order.index(f"resync-{new}") < order.index(f"catchup-{new}")
        assert order.index(f"catchup-{new}") < order.index(f"stop-{old}")
    elif f"stop-{old}" not in order:  # unplanned
        record = plan.steps[order.index("record")]
        assert record.params["needs_resync"] == [old], record.params
        if case["synchronous"] and not case["force"]:
            mode = case["sync_mode"] or {}
            assert mode.get("mode") == "sync" and mode.get("standby") in (None, new), case


def test_the_property_test_reaches_plans() -> None:
    """The strategy is worth its examples: about 40 % reach a plan (the first version of
    the property test was refused 90 % of the time and never varied needs_resync nor the
    synchronous mode). A quarter is the bar: far below the expected share, for a
    randomized run."""
    OUTCOMES.update(planned=0, refused=0)
    test_any_plan_keeps_the_promises()
    total = OUTCOMES["planned"] + OUTCOMES["refused"]
    assert total >= 100, OUTCOMES
    assert OUTCOMES["planned"] >= 0.25 * total, OUTCOMES


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
