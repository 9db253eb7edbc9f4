"""When a PostgreSQL pair refuses a plan: the observed states that make a run unsafe.

Refusing before a run exists is the cheapest safety there is: nothing was changed, and
the person reads one line saying why and what to do. Pure functions of the observed
state (``Driver.check_plan``); they raise ``PlanRefused`` or return notes for the plan.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.planning import PlanCheck, RunKind
from failback.errors import PlanRefused
from failback.model.observed import ComponentObservation, ServiceState


def check_database_plan(check: PlanCheck) -> list[str]:
    """Refuse an unsafe failover or failback of the database ``check.component``; else
    the notes its plan carries. A switch back is decided by the observation gate."""
    if check.kind is RunKind.FAILOVER:
        return _check_failover(check)
    if check.kind is RunKind.FAILBACK:
        _check_failback(check)
    return []


def _check_failover(check: PlanCheck) -> list[str]:
    db, state = check.component, check.state
    from_site, to_site = check.from_site, check.to_site
    old = state.get(db, from_site)
    new = state.get(db, to_site)
    _same_cluster(state, db)
    _refuse_bad_site(new, to_site, need="reachable")
    if not check.force or check.planned or (old is not None and old.data.get("misconfigured")):
        _refuse_bad_site(old, from_site, need="any")
    old_alive = old is not None and old.healthy and old.role == "primary"
    _refuse_unsynced_target(state, new, to_site, check.accept_data_loss)
    if check.planned:
        if not old_alive:
            raise PlanRefused(
                f"a planned failover needs a healthy primary at {from_site}; it is "
                f"{old.role if old else 'unknown'}",
                hint="for a failed primary run the unplanned failover (without --planned)",
            )
        return ["planned: zero-loss switchover"]
    if old_alive and not check.force:
        raise PlanRefused(
            f"the primary at {from_site} is healthy; an unplanned failover would throw away "
            "its latest writes",
            hint="use --planned for a zero-loss move (maintenance), or --force to fail over anyway",
        )
    if not check.force:
        _refuse_unless_zero_loss(check.service, state, to_site)
    notes = [f"{from_site} will need a resync before it can return"]
    if old_alive:
        notes.append(
            f"--force: {from_site} was healthy; writes it took after the standby's "
            "last received position are lost, and measured"
        )
    return notes


def _check_failback(check: PlanCheck) -> None:
    db, state = check.component, check.state
    home, away = check.to_site, check.from_site
    _same_cluster(state, db)
    current = state.get(db, away)
    _refuse_bad_site(current, away, need="reachable")
    if current is not None and current.role != "primary":
        raise PlanRefused(
            f"{away} is {current.role}, not the primary: there is nothing to fail back from",
            hint="`failback status` shows each site's role",
        )
    home_db = state.get(db, home)
    _refuse_bad_site(home_db, home, need="any")
    if home_db is not None and home_db.data.get("host_reachable") is False:
        raise PlanRefused(
            f"{home}: its machine does not answer, so failback cannot rewind or re-clone "
            "its database",
            hint=f"`failback hosts check` says why; fail back once {home} is reachable",
        )
    if home_db is not None and not home_db.data.get("pgdata_ok", True):
        raise PlanRefused(
            f"{home}: no PostgreSQL data directory at the pgdata the topology names",
            hint="fix pgdata of that site in the topology file (the resync acts on it)",
        )


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
