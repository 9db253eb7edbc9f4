"""The monitor's pure parts: config, allowed window, failback decisions, probe judging,
and the planner's refusal to promote a possibly lagging standby of a synchronous service."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from failback.config import ConfigError, Policy, load_topology_text
from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation, ServiceState
from failback.monitor import decide, window
from failback.observe.probes import Probe, ProbeHealth, ProbeResult
from failback.plan.planners import plan_failover
from tests.unit.test_planner import PG_TOPOLOGY

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    """Epoch seconds of a Berlin wall-clock time, e.g. '2026-11-23 03:00' (a Monday)."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def policy(**values: Any) -> Policy:
    return Policy.model_validate(values)


# --------------------------------------------------------------------------- config


def test_policy_defaults_detect_a_dead_primary_within_three_seconds() -> None:
    detection = Policy().detection
    worst_refused = detection.interval * detection.failure_threshold
    worst_hung = max(detection.interval, detection.timeout) * detection.failure_threshold
    assert worst_refused <= 3 and worst_hung <= 3
    assert Policy().failback == "manual" and Policy().synchronous is False


def test_policy_rejects_bad_window_and_strict_without_synchronous() -> None:
    with pytest.raises(ValueError, match="strict: true needs synchronous"):
        policy(strict=True)
    with pytest.raises(ValueError, match="not a day"):
        policy(failback_window={"days": ["someday"], "from": "02:00", "to": "05:00"})
    with pytest.raises(ValueError, match="unknown time zone"):
        policy(failback_window={"from": "02:00", "to": "05:00", "timezone": "Mars/Base"})
    with pytest.raises(ValueError, match="HH:MM"):
        policy(failback_window={"from": "2am", "to": "05:00"})


def test_notifications_section_with_secret_headers_loads_and_typos_are_errors() -> None:
    text = PG_TOPOLOGY + (
        "notifications:\n  webhooks:\n"
        '    - {url: "http://127.0.0.1:9/hook", headers: {Authorization: "env:HOOK"},'
        " events: [failover.]}\n"
    )
    topology = load_topology_text(text, "/tmp/failback.yaml")
    (hook,) = topology.notifications.webhooks
    assert hook.headers["Authorization"].describe() == "env:HOOK"
    assert hook.wants("failover.started") and not hook.wants("failback.started")
    with pytest.raises(ConfigError) as err:
        load_topology_text(PG_TOPOLOGY + "notifications:\n  webhook: []\n", "/tmp/f.yaml")
    assert "webhooks" in str(err.value.problems[0])


# --------------------------------------------------------------------------- window


def test_window_on_weekdays_in_its_own_time_zone() -> None:
    w = policy(
        failback_window={"days": ["weekdays"], "from": "02:00", "to": "05:00",
                         "timezone": "Europe/Berlin"}
    ).failback_window  # fmt: skip
    assert w is not None
    assert window.inside(w, at("2026-11-23 03:00"))  # Monday
    assert not window.inside(w, at("2026-11-23 05:00"))  # end is exclusive
    assert not window.inside(w, at("2026-11-28 03:00"))  # Saturday
    opening = window.next_opening(w, at("2026-11-27 06:00"))  # Friday after the window
    assert datetime.fromtimestamp(opening, BERLIN).isoformat().startswith("2026-11-30T02:00")
    assert "opens Mon 02:00" in window.describe_wait(w, at("2026-11-27 06:00"))


def test_window_across_midnight_belongs_to_the_day_it_starts() -> None:
    w = policy(
        failback_window={"days": ["fri"], "from": "22:00", "to": "02:00",
                         "timezone": "Europe/Berlin"}
    ).failback_window  # fmt: skip
    assert w is not None
    assert window.inside(w, at("2026-11-27 23:00"))  # Friday night
    assert window.inside(w, at("2026-11-28 01:00"))  # Saturday, still Friday's window
    assert not window.inside(w, at("2026-11-29 01:00"))  # Sunday 01:00: Saturday's, not set


# --------------------------------------------------------------------------- failback decisions


def facts(**overrides: Any) -> decide.FailbackFacts:
    base: dict[str, Any] = {
        "now": 10_000.0,
        "policy": policy(failback="automatic", stability_window="5m", hold_down="30m"),
        "home": "dc1",
        "auto": {},
        "stable_since": 10_000.0 - 130,
        "failing": "",
        "last_failback_at": None,
        "automatic_failbacks_24h": 0,
    }
    base.update(overrides)
    return decide.FailbackFacts(**base)


def test_failback_decisions_say_why_not() -> None:
    assert decide.decide_failback(facts()).reason == "stable for 2m10s of 5m"
    assert decide.decide_failback(facts(policy=policy())).code == "manual"
    suspended = decide.decide_failback(
        facts(auto={"enabled": False, "by": "monitor", "reason": "flapped at 14:02:07"})
    )
    assert suspended.reason == "suspended: flapped at 14:02:07" and not suspended.act
    assert decide.decide_failback(facts(stable_since=None, failing="db@dc1: down")).reason == (
        "dc1 not healthy: db@dc1: down"
    )
    held = decide.decide_failback(facts(stable_since=0.0, last_failback_at=10_000.0 - 60))
    assert held.code == "hold_down" and not held.act
    for ending, said in (("rolled-back", "rolled back"), ("aborted", "aborted")):
        turned_back = decide.decide_failback(
            facts(stable_since=0.0, last_failback_at=10_000.0 - 60, last_failback_ending=ending)
        )
        assert turned_back.code == "hold_down", turned_back
        assert f"last failback {said}" in turned_back.reason, turned_back.reason
        assert "`failback auto enable` to try again now" in turned_back.reason
    capped = decide.decide_failback(facts(stable_since=0.0, automatic_failbacks_24h=3))
    assert capped.code == "capped"
    go = decide.decide_failback(facts(stable_since=0.0))
    assert go.act and go.code == "go"


def test_a_person_enabling_again_overrides_the_hold_down() -> None:
    last = 10_000.0 - 60
    enabled = {"enabled": True, "by": "alice", "at": last + 10}
    assert decide.decide_failback(facts(stable_since=0.0, last_failback_at=last, auto=enabled)).act
    assert decide.flapped(10_000.0, last, 1800.0)
    assert not decide.flapped(10_000.0, last, 1800.0, enabled_at=last + 10)
    assert not decide.flapped(10_000.0, last, 30.0)


def test_outside_the_allowed_window_waits() -> None:
    p = policy(
        failback="automatic",
        stability_window="1m",
        failback_window={"days": ["weekdays"], "from": "02:00", "to": "05:00",
                         "timezone": "Europe/Berlin"},
    )  # fmt: skip
    now = at("2026-11-23 12:00")
    decision = decide.decide_failback(facts(policy=p, now=now, stable_since=now - 3600))
    assert decision.code == "window" and "outside the allowed window" in decision.reason


# --------------------------------------------------------------------------- probe judging


def test_probe_is_declared_failed_at_its_threshold_and_any_failure_restarts_stability() -> None:
    probe = Probe("db@dc1", "component", "dc1", "db", "postgres", 0.5, 1.0, 3, run=lambda: None)  # type: ignore[arg-type,return-value]
    health = ProbeHealth(probe)
    ok = ProbeResult(True, "primary", 1.0, 0.01)
    bad = ProbeResult(False, "refused", 2.0, 0.01)
    health.record(ok)
    assert health.status == "passing" and health.passing_since == 1.0
    health.record(bad)
    health.record(bad)
    assert health.status == "failing" and health.passing_since is None
    assert health.record(bad) and health.failed and health.status == "failed"
    health.record(ProbeResult(True, "primary", 9.0, 0.01))
    assert not health.failed and health.passing_since == 9.0
    assert [r["ok"] for r in health.to_dict()["history"]] == [True, False, False, False, True]


# --------------------------------------------------------------------------- planner refusal

SYNC_TOPOLOGY = PG_TOPOLOGY.replace("      stability_window: 10s\n", "      synchronous: true\n")


def dead_primary(sync_mode: dict[str, Any] | None) -> ServiceState:
    comps = [
        ComponentObservation(component="db", site="dc1", driver="postgres", healthy=False,
                             role="down", data={"system_identifier": 7}),
        ComponentObservation(component="db", site="dc2", driver="postgres", healthy=True,
                             role="standby", data={"system_identifier": 7}),
    ]  # fmt: skip
    return ServiceState(
        service="app", primary_site="dc1", active_site="dc1", components=comps,
        sync_mode=sync_mode,
    )  # fmt: skip


def test_failover_of_a_synchronous_service_refuses_a_standby_that_may_lack_writes() -> None:
    topology = load_topology_text(SYNC_TOPOLOGY, "/tmp/failback.yaml")
    svc = topology.service("app")
    relaxed = {"mode": "relaxed", "primary": "dc1", "standby": "dc2"}
    with pytest.raises(PlanRefused, match="may lack acknowledged writes"):
        plan_failover("app", svc, dead_primary(relaxed))
    with pytest.raises(PlanRefused, match="never observed in zero-loss mode"):
        plan_failover("app", svc, dead_primary(None))
    assert plan_failover("app", svc, dead_primary(relaxed), force=True).to_site == "dc2"
    zero_loss = {"mode": "sync", "primary": "dc1", "standby": "dc2"}
    assert plan_failover("app", svc, dead_primary(zero_loss)).to_site == "dc2"
    # an asynchronous service keeps today's behaviour: what may be lost is measured
    plain = load_topology_text(PG_TOPOLOGY, "/tmp/failback.yaml").service("app")
    assert plan_failover("app", plain, dead_primary(None)).to_site == "dc2"


# --------------------------------------------------------------------------- level-triggered


def run_facts(**overrides: Any) -> decide.RunFacts:
    base: dict[str, Any] = {
        "id": 7, "kind": "failover", "by": "monitor", "status": "running", "alive": True,
        "backward": False,
    }  # fmt: skip
    base.update(overrides)
    return decide.RunFacts(**base)


def failover_facts(**overrides: Any) -> decide.FailoverFacts:
    base: dict[str, Any] = {
        "policy": policy(failover="automatic"),
        "active": "dc1",
        "failed": ("db@dc1: down: connection refused",),
    }
    base.update(overrides)
    return decide.FailoverFacts(**base)


def test_a_failure_that_began_during_a_run_is_acted_on_when_the_run_ends() -> None:
    """Issue 10: the failover decision is a function of the current state. While a run
    holds the service it says what it will do; once the service is free the same
    failure fails over, with no memory of when it began."""
    during = decide.decide_failover(failover_facts(run=run_facts(kind="failback")))
    assert not during.act and during.code == "busy"
    assert "dc1 failed (db@dc1: down: connection refused): acted on when run 7 ends" in (
        during.reason
    )
    after = decide.decide_failover(failover_facts())
    assert after.act and after.code == "go"
    assert decide.decide_failover(failover_facts(failed=())).code == "healthy"
    manual = decide.decide_failover(failover_facts(policy=policy()))
    assert manual.code == "manual" and not manual.act
    refused = decide.decide_failover(failover_facts(refused="dc2 may lack writes"))
    assert refused.code == "refused" and not refused.act
    assert decide.decide_failover(failover_facts(starting="failover")).code == "busy"


def test_a_failback_parked_at_a_gate_is_aborted_when_the_active_site_fails() -> None:
    """Issue 10: a failure is acted on when the run holding the service stops at a gate.
    A failback waiting for approval before its point of no return is undone, then the
    failover follows (automatic policy only; never a run that is executing or past it)."""
    waiting = run_facts(kind="failback", by="alice", status="waiting-approval", alive=False)
    parked = dataclasses.replace(waiting, parked=True)
    go = decide.decide_failover(failover_facts(run=parked))
    assert go.act and go.code == "abort-parked"
    assert "run 7 (failback, by alice) waits at a gate" in go.reason
    # not parked (past its point of no return, or executing): it is waited for
    assert decide.decide_failover(failover_facts(run=waiting)).code != "abort-parked"
    manual = decide.decide_failover(failover_facts(policy=policy(), run=parked))
    assert manual.code != "abort-parked" and not manual.act
    assert not decide.decide_failover(failover_facts(failed=(), run=parked)).act


def test_the_monitor_continues_only_its_own_interrupted_runs() -> None:
    """Issue 9 item 1: an interrupted run the monitor started is continued (the executor
    keeps its direction); a person's is reported and left to that person."""
    mine = decide.decide_run(run_facts(alive=False))
    assert mine.act and mine.code == "resume"
    undoing = decide.decide_run(run_facts(alive=False, status="rolling-back", backward=True))
    assert undoing.act and "finishes its undo" in undoing.reason
    theirs = decide.decide_run(run_facts(alive=False, by="alice"))
    assert not theirs.act and theirs.code == "interrupted"
    assert theirs.reason == "run 7 was interrupted; a person decides: failback resume 7 / abort 7"
    theirs_undoing = decide.decide_run(run_facts(alive=False, by="alice", backward=True))
    assert theirs_undoing.reason.endswith("a person decides: failback abort 7")
    # not interrupted: alive, or waiting for a person, or stopped for one
    assert decide.decide_run(run_facts()).code == "busy"
    assert decide.decide_run(run_facts(alive=False, status="waiting-approval")).code == "busy"
    assert decide.decide_run(run_facts(alive=False, status="failed")).code == "stopped"
    # a person's interrupted run is reported by the failover decision, never resumed
    held = decide.decide_failover(failover_facts(run=run_facts(alive=False, by="alice")))
    assert held.code == "interrupted" and not held.act


NOW = 10_000.0


def failback_run(**overrides: Any) -> decide.FailbackRunFacts:
    base: dict[str, Any] = {
        "id": 3, "by": "monitor", "ended_at": None, "went_home": False, "succeeded": False,
        "home_quiet_since": 0.0,
    }  # fmt: skip
    base.update(overrides)
    return decide.FailbackRunFacts(**base)


def flap_facts(**overrides: Any) -> decide.FlapFacts:
    base: dict[str, Any] = {
        "now": NOW, "service": "app", "home": "dc1", "hold_down": 30.0, "auto": {},
        "failures": (("db@dc1: down", NOW - 2),), "failback": failback_run(),
    }  # fmt: skip
    base.update(overrides)
    return decide.FlapFacts(**base)


def test_flap_damping_during_and_just_after_a_failback() -> None:
    # waiting at its stability gate (nothing done at dc1 yet): a flap, and the monitor's
    # own failback is aborted before its point of no return
    at_gate = flap_facts()
    decision = decide.decide_flap(at_gate)
    assert decision.act and "dc1 failed during the failback of run 3" in decision.reason
    assert decision.reason.startswith("flapped at ")
    assert decision.reason.endswith("`failback auto enable app`")
    assert decide.abort_own_failback(at_gate)
    assert not decide.abort_own_failback(flap_facts(failback=failback_run(by="alice")))
    # in its observation window, the window itself switches back: a flap, no abort
    observing = flap_facts(failback=failback_run(went_home=True, home_quiet_since=NOW - 5))
    assert decide.decide_flap(observing).act and not decide.abort_own_failback(observing)
    died = failback_run(went_home=True, new_primary_died="db@dc1: down", home_quiet_since=NOW)
    switched = decide.decide_flap(flap_facts(failures=(), failback=died))
    assert switched.act and "observation window of run 3, which switched back" in switched.reason
    # just after its commit, within hold_down
    ended = failback_run(ended_at=NOW - 1, went_home=True, succeeded=True, home_quiet_since=NOW - 4)
    after = decide.decide_flap(flap_facts(failback=ended))
    assert after.act and "dc1 failed 1.0s after the failback of run 3" in after.reason


def test_flap_damping_leaves_alone_what_is_not_a_flap() -> None:
    # the run restarts dc1 itself (its resync): that failure is the run's to judge
    resync = flap_facts(failback=failback_run(home_quiet_since=None))
    assert not decide.decide_flap(resync).act and not decide.abort_own_failback(resync)
    # a failure that began before the run last acted on dc1 (a stale result)
    stale = flap_facts(failback=failback_run(home_quiet_since=NOW - 1))
    assert not decide.decide_flap(stale).act and not decide.abort_own_failback(stale)
    # dc1 healthy
    assert not decide.decide_flap(flap_facts(failures=())).act
    # beyond hold_down, or re-enabled by a person since that failback
    old = failback_run(ended_at=NOW - 31, went_home=True, succeeded=True)
    assert not decide.decide_flap(flap_facts(failback=old)).act
    recent = failback_run(ended_at=NOW - 5, went_home=True, succeeded=True)
    enabled = {"enabled": True, "by": "alice", "at": NOW - 3}
    assert not decide.decide_flap(flap_facts(failback=recent, auto=enabled)).act
    # a failback that never brought the service home (rolled back before promoting)
    never = failback_run(ended_at=NOW - 5)
    assert not decide.decide_flap(flap_facts(failback=never)).act
    # already off: nothing to add (the first reason stays)
    off = {"enabled": False, "by": "monitor", "reason": "flapped at 14:02:07"}
    assert decide.decide_flap(flap_facts(auto=off)).code == "off"
    # no failback ever
    assert not decide.decide_flap(flap_facts(failback=None)).act


# --------------------------------------------------------------------------- status


def test_status_says_running_only_while_the_monitor_is_alive_and_reporting() -> None:
    import os
    import subprocess
    from pathlib import Path

    from failback.monitor.liveness import STALE_AFTER_S, liveness, monitor_line

    now = 1_000.0
    alive = {"pid": os.getpid(), "heartbeat": now - 1}
    assert liveness(alive, now)["state"] == "running"
    assert liveness({**alive, "heartbeat": now - STALE_AFTER_S - 1}, now)["state"] == "stalled"
    assert liveness({**alive, "stopped_at": now - 1}, now)["state"] == "stopped"
    assert liveness({}, now)["state"] == "never"
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its PID no longer exists
    dead = liveness({"pid": gone.pid, "heartbeat": now - 1}, now)
    assert dead == {**dead, "state": "dead", "running": False}
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{zombie.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert liveness({"pid": zombie.pid, "heartbeat": now - 1}, now)["state"] == "dead"
    finally:
        zombie.wait()
    line = monitor_line({**liveness({"pid": gone.pid, "heartbeat": now - 3}, now), "pid": gone.pid,
                         "heartbeat": now - 3}, now)  # fmt: skip
    assert line == f"NOT running: process {gone.pid} is gone (last report 3.0s ago)"


# --------------------------------------------------------------------------- fence on sight

FENCE_TOPOLOGY = PG_TOPOLOGY.replace(
    "    policy:\n",
    """\
      pool:
        driver: pgbouncer
        options: {port: 6432, admin_user: pgbouncer, databases: [app],
                  databases_file: /etc/pgbouncer/failback.ini}
        sites:
          dc1: {host: 127.0.0.1, port: 5432}
          dc2: {host: 127.0.0.1, port: 5433}
      web:
        driver: haproxy
        options: {socket: /run/haproxy.sock, backend: web, tier: stateless}
        sites:
          dc1: {server: web1}
          dc2: {server: web2}
    policy:
""",
)


def fence_service() -> Any:
    return load_topology_text(FENCE_TOPOLOGY, "/tmp/failback.yaml").service("app")


def seen(component: str, kind: str, site: str, role: str) -> ComponentObservation:
    obs = ComponentObservation(
        component=component, site=site, driver="x", healthy=True, role=role, data={}
    )
    obs.kind = kind
    return obs


def stale_dc1(*, pool_at: str) -> list[ComponentObservation]:
    """dc2 is active; dc1's database came back as a primary; the pool points at ``pool_at``."""
    return [
        seen("db", "database", "dc1", "stale-primary"),
        seen("db", "database", "dc2", "primary"),
        seen("router", "router", "dc1", "standby"),
        seen("router", "router", "dc2", "active"),
        seen("pool", "pool", "dc1", "active" if pool_at == "dc1" else "standby"),
        seen("pool", "pool", "dc2", "active" if pool_at == "dc2" else "standby"),
        seen("web", "tier", "dc1", "active"),
        seen("web", "tier", "dc2", "active"),
    ]


def test_fence_plan_is_the_routers_and_pools_own_steps_for_the_stale_site() -> None:
    """The router is fenced (idempotent) and a pool sending clients to the stale primary
    is held; nothing acts on the active site, the database or the stateless tier."""
    from failback.plan.fence import plan_fence, routed_to

    observed = stale_dc1(pool_at="dc1")
    assert routed_to(observed, "dc1") == ["pool"]  # a tier is not a database route
    plan = plan_fence("app", fence_service(), observed, stale_site="dc1", active_site="dc2")
    assert plan.kind == "fence" and (plan.from_site, plan.to_site) == ("dc1", "dc2")
    assert [(s.action, s.component, s.site) for s in plan.steps] == [
        ("pgbouncer.pause", "pool", "dc1"),  # its clients provably reach the stale primary
        ("haproxy.fence", "router", "dc1"),
    ]
    pause, fence = plan.steps
    # a fence run never routes back to the stale primary: no step is ever undone, and
    # none is a point of no return (a failure must release the lock, not keep it)
    assert fence.params["undo"] is False and pause.params["undo"] is False
    assert not fence.point_of_no_return and not pause.point_of_no_return
    assert pause.params["only_if_pointing_at"] == "dc1"  # re-pointed meanwhile: left alone
    assert not fence.params.get("stop_writes") and not pause.params.get("stop_writes")


def test_fence_plan_leaves_a_pool_that_points_at_the_active_site_alone() -> None:
    from failback.plan.fence import plan_fence

    plan = plan_fence(
        "app", fence_service(), stale_dc1(pool_at="dc2"), stale_site="dc1", active_site="dc2"
    )
    assert [(s.action, s.component) for s in plan.steps] == [("haproxy.fence", "router")]
    again = plan_fence(
        "app", fence_service(), stale_dc1(pool_at="dc2"), stale_site="dc1", active_site="dc2"
    )
    assert again == plan  # pure


def fence_facts(**values: Any) -> decide.FenceFacts:
    base: dict[str, Any] = {"site": "dc1", "routed": (), "seen": False, "busy": None}
    return decide.FenceFacts(**{**base, **values})


def test_fence_on_sight_decisions() -> None:
    first = decide.decide_fence(fence_facts())
    assert first.act and first.code == "go"
    # once per episode while nothing sends clients there ...
    assert decide.decide_fence(fence_facts(seen=True)).code == "fenced"
    # ... again whenever something does (a person re-routed it, a fence failed)
    again = decide.decide_fence(fence_facts(seen=True, routed=("router",)))
    assert again.act and "routed (router)" in again.reason
    # never while a run holds the service: a failback's new primary is "stale" until
    # its last step records the active site, and runs route as their plans say
    busy = decide.decide_fence(fence_facts(routed=("router",), busy="run 7 (failback)"))
    assert not busy.act and busy.code == "busy"
    # a fence that did not succeed is tried again after a pause, not every tick
    waiting = decide.decide_fence(fence_facts(routed=("router",), retrying="run 8 rolled-back"))
    assert not waiting.act and waiting.code == "retrying"


def test_probes_of_the_traffic_layer_are_not_the_site() -> None:
    """Routers, pools and stateless tiers are judged by role, not by driver name."""
    from failback.hosts import HostSet
    from failback.observe.probes import build_probes

    probes = {p.key: p for p in build_probes("app", fence_service(), HostSet())}
    layer = {key for key, p in probes.items() if p.is_traffic_layer}
    assert layer == {f"{c}@{s}" for c in ("router", "pool", "web") for s in ("dc1", "dc2")}
    assert probes["db@dc1"].role == "database" and not probes["db@dc1"].is_traffic_layer


def test_zero_loss_is_read_from_the_primary_by_its_driver() -> None:
    from failback.monitor.liveness import zero_loss_now

    def doc(replicas: list[dict[str, Any]], role: str = "primary") -> dict[str, Any]:
        return {"active_site": "dc2", "components": [
            {"component": "router", "kind": "router", "driver": "haproxy", "site": "dc2",
             "role": "active", "data": {}},
            {"component": "db", "kind": "database", "driver": "postgres", "site": "dc2",
             "role": role, "data": {"replicas": replicas}},
        ]}  # fmt: skip

    streaming = {"application_name": "dc1", "state": "streaming", "sync_state": "quorum"}
    assert zero_loss_now(doc([streaming])) == {"on": True, "why": "dc1 synchronous"}
    catching_up = {**streaming, "state": "catchup"}
    assert zero_loss_now(doc([catching_up]))["on"] is False
    assert zero_loss_now(doc([{**streaming, "sync_state": "async"}]))["why"] == (
        "asynchronous replication"
    )
    assert zero_loss_now(doc([], role="down"))["why"] == "no reachable primary at dc2"
    assert zero_loss_now({"active_site": "dc2", "components": []})["on"] is False
