"""Failover and failback plans for a service with a PostgreSQL pair behind a router.

The order is the product (see docs/concepts.md): fence before promote, promote only
after the exact final position was replayed, unfence last. Pure functions of the
topology and the observed state.
"""

from __future__ import annotations

from typing import Any

from failback.model.observed import ComponentObservation, ServiceState
from failback.model.plan import Plan, StepSpec
from failback.plan.command_plans import command_switch_steps
from failback.plan.common import (
    approval_gate,
    approval_needed,
    checks_gate,
    record_step,
    stability_gate,
)
from failback.plan.errors import PlanRefused
from failback.plan.router_steps import (
    client_endpoint,
    db_routers,
    keep_fenced_steps,
    route_writes_steps,
    split_traffic_plan,
    stop_writes_steps,
    traffic_steps,
)


def _one(service: Any, driver: str) -> str | None:
    names = [n for n, c in service.components.items() if c.driver == driver]
    return names[0] if names else None


def preflight_step(db: str, site: str, *, expect: str, compare: list[str], title: str) -> StepSpec:
    """Gate: the site is what the plan assumes (role, credentials, same cluster, pgdata)."""
    return StepSpec(
        id="preflight", title=title, action="postgres.preflight", component=db, site=site,
        kind="gate", params={"expect": expect, "compare": compare},
    )  # fmt: skip


def catchup_step(db: str, site: str, *, source: str) -> StepSpec:
    """Wait until ``site`` lags ``source`` by less than max_lag_bytes."""
    return StepSpec(
        id=f"catchup-{site}", title=f"{site} catches up with {source}",
        action="postgres.catchup", component=db, site=site, params={"source": source},
    )  # fmt: skip


def _refuse_bad_site(obs: ComponentObservation | None, site: str, *, need: str) -> None:
    """Wrong credentials, wrong pgdata, wrong cluster: refuse before creating a run."""
    if obs is None:
        return
    text = obs.detail or ""
    if text.startswith(f"{site}: "):
        text = text[len(site) + 2 :]
    if obs.role == "unknown" and not obs.healthy:
        raise PlanRefused(
            f"{site}: {text}",
            hint="check that site's host, port, credentials and pgdata in the topology file",
        )
    if obs.data.get("pgdata_matches") is False and obs.role != "unknown":
        raise PlanRefused(
            f"{site}: the server at {obs.data.get('address')} runs from "
            f"{obs.data.get('data_directory')}, not from the pgdata the topology names",
            hint="fix pgdata of that site in the topology file: failback acts on that directory",
        )
    if need == "reachable" and not obs.healthy:
        raise PlanRefused(
            f"{site}: the database is not reachable ({text})",
            hint="a failover needs the target site up; `failback status` shows every site",
        )


def _refuse_unreachable_routers(service: Any, state: ServiceState, *, what: str) -> None:
    """A switch needs every router it must fence and re-point: refuse while one is down."""
    for name, _driver in db_routers(service):
        for obs in state.components:
            if obs.component == name and not obs.healthy:
                raise PlanRefused(
                    f"{name} cannot be driven: {obs.detail}",
                    hint=f"a {what} must fence and re-point every router; fix {name} first",
                )


def _same_cluster(state: ServiceState, db: str) -> None:
    seen = {
        o.site: o.data.get("system_identifier")
        for o in state.components
        if o.component == db and o.data.get("system_identifier")
    }
    if len(set(seen.values())) > 1:
        detail = ", ".join(f"{site}: {sysid}" for site, sysid in seen.items())
        raise PlanRefused(
            f"the sites of {db} are different PostgreSQL clusters (system identifiers {detail})",
            hint="one site's host/port/pgdata points at another cluster: fix the topology file",
        )


def _refuse_unsynced_target(
    state: ServiceState, new: ComponentObservation | None, to_site: str, accept: bool
) -> None:
    """Never promote a site that has not been resynced since it lost the primary role.

    Its data stops where it was when the service left it; every write acknowledged
    since then would silently disappear for clients (promises 1 and 2).
    """
    if accept:
        return
    if to_site in state.needs_resync:
        raise PlanRefused(
            f"{to_site} has not been resynced since it lost the primary role: failing over to"
            f" it would lose every write acknowledged at {state.active_site} since then",
            hint=f"bring {state.active_site} back, or resync {to_site} first; if "
            f"{state.active_site}'s data is gone for good, --accept-data-loss",
        )
    if new is not None and new.role in ("primary", "stale-primary"):
        raise PlanRefused(
            f"{to_site} already claims the primary role while {state.active_site} is active: "
            "promoting it would keep its divergent writes and drop the other site's",
            hint=f"resync {to_site} first (failback), or --accept-data-loss",
        )


def _refuse_unless_zero_loss(service: Any, state: ServiceState, to_site: str) -> None:
    """With ``policy.synchronous``, promote only a standby that was synchronous when the
    primary was last observed: in relaxed (asynchronous) mode it may lack acknowledged
    writes, and a synchronous service promised not to lose any."""
    if not getattr(service.policy, "synchronous", False):
        return
    mode = state.sync_mode or {}
    if mode.get("mode") == "sync" and mode.get("standby") in (None, to_site):
        return
    seen = (
        f"was in {mode.get('mode')} mode at the last observation"
        if mode
        else "was never observed in zero-loss mode"
    )
    raise PlanRefused(
        f"{state.service} is synchronous but {seen}: {to_site} may lack acknowledged writes",
        hint="bring the old primary back if you can; --force promotes anyway (what may be lost"
        " is measured)",
    )


def switchover_steps(
    service: Any, *, db: str, old: str, new: str, endpoint: str | None
) -> list[StepSpec]:
    """Zero-loss switchover old -> new: the core of a planned failover and of a failback."""
    steps: list[StepSpec] = [
        StepSpec(
            id=f"checkpoint-{old}",
            title=f"checkpoint {old} so that its final stop is quick",
            action="postgres.checkpoint",
            component=db,
            site=old,
        )
    ]
    steps += stop_writes_steps(service, old, undo="route", purpose=f"stop writes at {old}")
    steps.append(StepSpec(
        id=f"stop-{old}", title=f"stop {old} cleanly and read its final WAL position",
        action="postgres.stop", component=db, site=old,
        why="a clean stop ships the last WAL; its final position is what must be replayed",
    ))  # fmt: skip
    steps.append(StepSpec(
        id=f"replay-{new}", title=f"wait until {new} replayed the exact final position",
        action="postgres.wait_replay", component=db, site=new, params={"source": old},
        why="promise 2: not one acknowledged write may be left behind",
    ))  # fmt: skip
    steps.append(StepSpec(
        id=f"promote-{new}", title=f"promote {new}", action="postgres.promote",
        component=db, site=new, point_of_no_return=True,
    ))  # fmt: skip
    steps += route_writes_steps(service, new, measure=True, from_site=old)
    steps.extend(
        command_switch_steps(
            service, from_site=old, to_site=new, promote_is_point_of_no_return=False
        )
    )
    steps.append(StepSpec(
        id=f"reprotect-{old}", title=f"re-protect: {old} becomes a standby of {new}",
        action="postgres.resync", component=db, site=old, params={"source": new},
    ))  # fmt: skip
    steps.append(StepSpec(
        id=f"verify-{new}", title=f"verify a write through the clients' endpoint lands on {new}",
        action="postgres.verify_write", component=db, site=new,
        params={"endpoint": endpoint},
    ))  # fmt: skip
    return steps


def postgres_failover_plan(
    service_name: str, service: Any, state: ServiceState, *, from_site: str, to_site: str,
    planned: bool, force: bool, accept_data_loss: bool = False,
) -> Plan:  # fmt: skip
    db = _one(service, "postgres")
    assert db is not None
    endpoint = client_endpoint(service)
    old = state.get(db, from_site)
    new = state.get(db, to_site)
    _same_cluster(state, db)
    _refuse_bad_site(new, to_site, need="reachable")
    if not force or planned or (old is not None and old.data.get("misconfigured")):
        _refuse_bad_site(old, from_site, need="any")
    old_alive = old is not None and old.healthy and old.role == "primary"
    _refuse_unsynced_target(state, new, to_site, accept_data_loss)
    if planned or not force:
        _refuse_unreachable_routers(service, state, what="failover")
    if planned:
        if not old_alive:
            raise PlanRefused(
                f"a planned failover needs a healthy primary at {from_site}; it is "
                f"{old.role if old else 'unknown'}",
                hint="for a failed primary run the unplanned failover (without --planned)",
            )
        steps = [
            preflight_step(
                db,
                to_site,
                expect="standby",
                compare=[from_site],
                title=f"preflight: {to_site} is a standby of the same cluster",
            ),
            catchup_step(db, to_site, source=from_site),
            *switchover_steps(service, db=db, old=from_site, new=to_site, endpoint=endpoint),
            *traffic_steps(
                service, to_site=to_site, away=from_site, percents=[100], bake_s=0, gated=False
            ),
            record_step(to_site, []),
        ]
        return Plan(
            service=service_name,
            kind="failover",
            from_site=from_site,
            to_site=to_site,
            steps=steps,
            notes=["planned: zero-loss switchover"],
        )
    if old_alive and not force:
        raise PlanRefused(
            f"the primary at {from_site} is healthy; an unplanned failover would throw away "
            "its latest writes",
            hint="use --planned for a zero-loss move (maintenance), or --force to fail over anyway",
        )
    if not force:
        _refuse_unless_zero_loss(service, state, to_site)
    steps: list[StepSpec] = [
        StepSpec(
            id="preflight",
            title=f"preflight: {to_site} is usable",
            kind="gate",
            action="postgres.preflight",
            component=db,
            site=to_site,
            params={"expect": "any", "compare": []},
        ),
    ]
    steps += stop_writes_steps(service, from_site, undo="restore", purpose=f"fence {from_site}")
    steps.append(StepSpec(
        id=f"fence-db-{from_site}", title=f"stop {from_site}'s database if it still runs",
        action="postgres.fence", component=db, site=from_site,
    ))  # fmt: skip
    steps.append(StepSpec(
        id=f"promote-{to_site}", title=f"promote {to_site}", action="postgres.promote",
        component=db, site=to_site, params={"measure_loss": True, "relax_sync": True},
        point_of_no_return=True,
    ))  # fmt: skip
    steps += route_writes_steps(service, to_site, measure=False, from_site=from_site)
    # a failover moves the stateless tier in one step
    steps += traffic_steps(
        service, to_site=to_site, away=from_site, percents=[100], bake_s=0, gated=False
    )
    steps.extend(
        command_switch_steps(
            service, from_site=from_site, to_site=to_site, promote_is_point_of_no_return=False
        )
    )
    steps.append(StepSpec(
        id=f"verify-{to_site}",
        title=f"verify a write through the clients' endpoint lands on {to_site}",
        action="postgres.verify_write", component=db, site=to_site,
        params={"endpoint": endpoint, "measure_rto": True},
    ))  # fmt: skip
    steps.append(record_step(to_site, [from_site]))
    notes = [f"{from_site} will need a resync before it can return"]
    if old_alive:
        notes.append(
            f"--force: {from_site} was healthy; writes it took after the standby's "
            "last received position are lost, and measured"
        )
    return Plan(
        service=service_name,
        kind="failover",
        from_site=from_site,
        to_site=to_site,
        steps=steps,
        notes=notes,
    )


def postgres_failback_plan(
    service_name: str, service: Any, state: ServiceState, *, home: str, away: str,
    approval: bool | None, stability_window_s: float | None,
) -> Plan:  # fmt: skip
    db = _one(service, "postgres")
    assert db is not None
    endpoint = client_endpoint(service)
    _same_cluster(state, db)
    current = state.get(db, away)
    _refuse_bad_site(current, away, need="reachable")
    _refuse_unreachable_routers(service, state, what="failback")
    if current is not None and current.role != "primary":
        raise PlanRefused(
            f"{away} is {current.role}, not the primary: there is nothing to fail back from",
            hint="`failback status` shows each site's role",
        )
    home_db = state.get(db, home)
    _refuse_bad_site(home_db, home, need="any")
    if home_db is not None and not home_db.data.get("pgdata_ok", True):
        raise PlanRefused(
            f"{home}: no PostgreSQL data directory at the pgdata the topology names",
            hint="fix pgdata of that site in the topology file (the resync acts on it)",
        )
    policy = service.policy
    window = policy.stability_window if stability_window_s is None else stability_window_s
    steps: list[StepSpec] = []
    steps += keep_fenced_steps(service, home)
    steps += [
        checks_gate("precheck", home),
        preflight_step(
            db,
            away,
            expect="primary",
            compare=[home],
            title=f"preflight: {away} is the primary of the same cluster",
        ),
        stability_gate(home, window),
        StepSpec(
            id=f"resync-{home}",
            title=f"resync {home} from {away} (rewind or re-clone)",
            action="postgres.resync",
            component=db,
            site=home,
            params={"source": away},
        ),
        catchup_step(db, home, source=away),
    ]
    if approval_needed(policy.approval, approval):
        steps.append(approval_gate(
            home, f"{home} is resynced and caught up: switch writes back to it?"
        ))  # fmt: skip
    before, after = split_traffic_plan(
        list(policy.traffic_steps), policy.traffic_gate.database_after
    )
    bake = float(policy.bake_time)
    steps += traffic_steps(
        service, to_site=home, away=away, percents=before, bake_s=bake, gated=True
    )
    steps += switchover_steps(service, db=db, old=away, new=home, endpoint=endpoint)
    steps += traffic_steps(
        service, to_site=home, away=away, percents=after, bake_s=bake, gated=True
    )
    steps.append(checks_gate("postcheck", home))
    steps.append(record_step(home, []))
    if policy.observation_window > 0:
        steps.append(StepSpec(
            id="observe",
            title=f"observe {home} for {policy.observation_window:g}s (undo possible)",
            action="gate.observation", kind="gate",
            params={"window_s": float(policy.observation_window), "home": home, "away": away,
                    "db": db},
            why="until the window passes, abort or a failed gate switches back with no loss",
        ))  # fmt: skip
    return Plan(service=service_name, kind="failback", from_site=away, to_site=home, steps=steps)
