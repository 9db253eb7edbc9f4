"""The order of every procedure, pinned for representative services.

The planner orders roles and asks each component's driver for its steps; a reorder of
the phases, or of the roles within a phase, changes what clients see during a switch
(a pool resumed before a router re-points, a promotion before the old primary is
fenced). These tests write the expected order out in full, so that any reorder fails
here, with the whole sequence to read, and not only in a lab.
"""

from __future__ import annotations

from typing import Any

import pytest

from failback.config import load_topology_text
from failback.drivers.catalog import driver_of
from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.observed import ComponentObservation, ServiceState
from failback.plan.planners import plan_failback, plan_failover
from failback.plan.revert import revert_steps

CMD = """\
        sites:
          dc1: {fence: f1, promote: p1, unfence: u1, demote: d1, verify: v1, sync: s1}
          dc2: {fence: f2, promote: p2, unfence: u2, demote: d2, verify: v2, sync: s2}
"""
DB = """\
      db:
        driver: postgres
        sites:
          dc1: {port: 5432, pgdata: /srv/dc1}
          dc2: {port: 5433, pgdata: /srv/dc2}
"""
ROUTER = """\
      router:
        driver: haproxy
        options: {socket: /run/h.sock, backend: pg_write, endpoint: "127.0.0.1:6000"}
        sites: {dc1: {server: dc1}, dc2: {server: dc2}}
"""
POOL = """\
      pool:
        driver: pgbouncer
        options: {host: 127.0.0.1, port: 6100, admin_user: failback, databases: [app],
                  databases_file: /srv/pool/databases.ini}
        sites: {dc1: {host: 127.0.0.1, port: 5432}, dc2: {host: 127.0.0.1, port: 5433}}
"""
WEB = """\
      web:
        driver: haproxy
        options: {socket: /run/h.sock, backend: web, tier: stateless}
        sites: {dc1: {server: dc1}, dc2: {server: dc2}}
"""
VIP = "      vip:\n        driver: command\n" + CMD
POLICY = """\
    policy:
      approval: required
      stability_window: 3s
      traffic_steps: [50, 100]
      observation_window: 3s
"""


def service(*components: str) -> Any:
    # the router is declared before the pool on purpose: role order, not file order,
    # decides who acts first
    text = (
        "sites: {dc1: {}, dc2: {}}\nservices:\n  app:\n    primary_site: dc1\n"
        "    components:\n" + "".join(components) + POLICY
    )
    return load_topology_text(text, "/tmp/failback.yaml").service("app")


def observed(svc: Any, active: str, roles: dict[str, str]) -> ServiceState:
    """``roles``: the database's role per site; every other component healthy."""
    comps = []
    for site in ("dc1", "dc2"):
        for name, settings in svc.components.items():
            is_db = settings.driver == "postgres"
            role = roles[site] if is_db else ("active" if site == active else "standby")
            comps.append(ComponentObservation(
                component=name, site=site, driver=settings.driver,
                healthy=role != "down", role=role, data={"system_identifier": 7},
            ))  # fmt: skip
    return ServiceState(service="app", primary_site="dc1", active_site=active, components=comps)


def ids(steps: list[Any]) -> list[str]:
    return [s.id for s in steps]


FULL = (DB, ROUTER, POOL, WEB, VIP)
HEALTHY_AT_DC1 = {"dc1": "primary", "dc2": "standby"}
FAILED_AT_DC1 = {"dc1": "down", "dc2": "standby"}
BACK_AT_DC2 = {"dc1": "stale-primary", "dc2": "primary"}

SWITCHOVER_DC1_TO_DC2 = [
    "checkpoint-dc1",
    "pause-pool-dc1",  # the pool holds its clients first...
    "fence-router-dc1",
    "stop-dc1",
    "replay-dc2",
    "promote-dc2",
    "route-router-dc2",
    "route-pool-dc2",  # ...and lets them go last
    "fence-vip-dc1",
    "promote-vip-dc2",
    "unfence-vip-dc2",
    "demote-vip-dc1",
    "verify-vip-dc2",
    "reprotect-dc1",
    "verify-dc2",
]


def test_planned_failover_order() -> None:
    svc = service(*FULL)
    plan = plan_failover("app", svc, observed(svc, "dc1", HEALTHY_AT_DC1), planned=True)
    assert ids(plan.steps) == [
        "preflight",
        "catchup-dc2",
        *SWITCHOVER_DC1_TO_DC2,
        "traffic-web-dc2-100",
        "record",
    ]
    assert [s.id for s in plan.steps if s.point_of_no_return] == ["promote-dc2"]
    assert plan.steps[-1].params == {"active_site": "dc2", "needs_resync": []}


def test_unplanned_failover_order() -> None:
    svc = service(*FULL)
    plan = plan_failover("app", svc, observed(svc, "dc1", FAILED_AT_DC1))
    assert ids(plan.steps) == [
        "preflight",
        "pause-pool-dc1",
        "fence-router-dc1",
        "fence-vip-dc1",  # the operator's site fence (IPMI...): then the db fence need
        "fence-db-dc1",  # not wait for a machine that was powered off
        "promote-dc2",
        "route-router-dc2",
        "route-pool-dc2",
        "traffic-web-dc2-100",
        "promote-vip-dc2",
        "unfence-vip-dc2",
        "demote-vip-dc1",
        "verify-vip-dc2",
        "verify-dc2",
        "record",
    ]
    by_id = {s.id: s for s in plan.steps}
    # nobody knows when a failed site stopped taking writes: RTO is measured instead
    assert not any(s.params.get("measure_unavailability") for s in plan.steps)
    assert by_id["verify-dc2"].params == {"endpoint": "127.0.0.1:6100", "measure_rto": True}
    assert [s.id for s in plan.steps if s.point_of_no_return] == ["promote-dc2"]
    assert plan.steps[-1].params == {"active_site": "dc2", "needs_resync": ["dc1"]}


def test_failback_order() -> None:
    svc = service(*FULL)
    plan = plan_failback("app", svc, observed(svc, "dc2", BACK_AT_DC2))
    switchover = [
        i.replace("dc1", "DC").replace("dc2", "dc1").replace("DC", "dc2")
        for i in SWITCHOVER_DC1_TO_DC2
    ]
    assert ids(plan.steps) == [
        "fence-router-dc1",  # the returning old primary stays fenced
        "precheck",
        "preflight",
        "stability",
        "capture-dc1",  # what dc1 committed after the fork, before the resync erases it
        "resync-dc1",
        "sync-vip-dc1",
        "catchup-dc1",
        "approve",
        "traffic-web-dc1-50",
        "gate-web-dc1-50",
        *switchover,
        "traffic-web-dc1-100",
        "gate-web-dc1-100",
        "postcheck",
        "record",
        "observe",
    ]


def test_write_unavailability_starts_at_the_first_and_ends_at_the_last() -> None:
    svc = service(*FULL)
    plan = plan_failover("app", svc, observed(svc, "dc1", HEALTHY_AT_DC1), planned=True)
    stops = [s.id for s in plan.steps if s.params.get("stop_writes")]
    measured = [s.id for s in plan.steps if s.params.get("measure_unavailability")]
    assert stops == ["pause-pool-dc1"] and measured == ["route-pool-dc2"]


def test_only_an_unplanned_route_lifts_the_pools_login_backoff() -> None:
    """Only in an unplanned failover has the dead server refused the pool's connection
    attempts (a planned one PAUSEs before it stops the server): there the pool's route
    lifts PgBouncer's login backoff for its RESUME (PoolRoute)."""
    svc = service(*FULL)
    planned = plan_failover("app", svc, observed(svc, "dc1", HEALTHY_AT_DC1), planned=True)
    unplanned = plan_failover("app", svc, observed(svc, "dc1", FAILED_AT_DC1))
    assert not any(s.params.get("lift_login_backoff") for s in planned.steps)
    lifted = [s.id for s in unplanned.steps if s.params.get("lift_login_backoff")]
    assert lifted == ["route-pool-dc2"]


def test_switch_back_orders() -> None:
    svc = service(*FULL)
    params = {"home": "dc1", "away": "dc2", "db": "db"}
    back = ids(revert_steps(svc, {**params, "switch_back": "switchover"}))
    assert back == [f"back-{i}" for i in ["traffic-web-dc2-100", *SWITCHOVER_DC1_TO_DC2, "record"]]
    steps = revert_steps(svc, {**params, "switch_back": "failover"})
    assert ids(steps) == [
        f"back-{i}"
        for i in [
            "pause-pool-dc1",
            "fence-router-dc1",
            "fence-vip-dc1",
            "fence-db-dc1",
            "promote-dc2",
            "route-router-dc2",
            "route-pool-dc2",
            "traffic-web-dc2-100",
            "promote-vip-dc2",
            "unfence-vip-dc2",
            "demote-vip-dc1",
            "verify-vip-dc2",
            "verify-dc2",
            "record",
        ]
    ]
    # the switch back is the run's undo: nothing in it is a point of no return
    assert not any(s.point_of_no_return for s in steps)
    assert [s.id for s in steps if s.params.get("measure_unavailability")] == [
        "back-route-pool-dc2"
    ]


def test_command_only_service() -> None:
    """No database: the operator's promotion is the point of no return, and the site
    left behind needs its sync before it returns."""
    svc = service(VIP)
    down = observed(svc, "dc1", {}).model_copy(
        update={"components": [
            o.model_copy(update={"healthy": o.site != "dc1"})
            for o in observed(svc, "dc1", {}).components
        ]}
    )  # fmt: skip
    plan = plan_failover("app", svc, down)
    assert ids(plan.steps) == [
        "fence-vip-dc1",
        "promote-vip-dc2",
        "unfence-vip-dc2",
        "demote-vip-dc1",
        "verify-vip-dc2",
        "record",
    ]
    assert [s.id for s in plan.steps if s.point_of_no_return] == ["promote-vip-dc2"]
    assert plan.steps[-1].params["needs_resync"] == ["dc1"]
    back = plan_failback("app", svc, observed(svc, "dc2", {}), approval=False)
    assert ids(back.steps) == [
        "precheck",
        "stability",
        "sync-vip-dc1",
        "fence-vip-dc2",
        "promote-vip-dc1",
        "unfence-vip-dc1",
        "demote-vip-dc2",
        "verify-vip-dc1",
        "postcheck",
        "record",
    ]


def test_database_and_operator_without_routers() -> None:
    svc = service(DB, VIP)
    plan = plan_failover("app", svc, observed(svc, "dc1", HEALTHY_AT_DC1), planned=True)
    assert ids(plan.steps) == [
        "preflight",
        "catchup-dc2",
        *[i for i in SWITCHOVER_DC1_TO_DC2 if "pool" not in i and "router" not in i],
        "record",
    ]


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        (Phase.STOP_WRITES, {"router": ["fence-router-dc1"], "pool": ["pause-pool-dc1"]}),
        (Phase.ROUTE, {"router": ["route-router-dc2"], "pool": ["route-pool-dc2"]}),
        (Phase.KEEP_FENCED, {"router": ["fence-router-dc2"], "pool": []}),
        (Phase.PROMOTE, {"router": [], "pool": [], "db": ["promote-dc2"], "web": []}),
    ],
)
def test_each_driver_answers_only_for_its_phases(
    phase: Phase, expected: dict[str, list[str]]
) -> None:
    svc = service(*FULL)
    for name, want in expected.items():
        settings = svc.components[name]
        request = PlanRequest(
            phase=phase, kind=RunKind.FAILOVER, component=name, settings=settings,
            from_site="dc1", to_site="dc2",
        )  # fmt: skip
        assert ids(driver_of(settings).steps(request)) == want, name
