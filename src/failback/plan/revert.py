"""The steps that switch a service back to the site it came from (undo until commit).

Used when the observation window of a failback ends badly: a gate failed, or a person
ran ``failback abort``. The observation gate says how (``params.switch_back``):

* ``switchover`` (the default): the new primary is alive. The way back is the same
  zero-loss switchover the failback used, the other way round: the former primary was
  re-protected as a streaming standby, so nothing acknowledged is lost.
* ``failover``: the new primary died in the window. A switchover would need it to
  stop cleanly and hand over its final position, which a dead server cannot do. The
  way back is the unplanned failover path to the site re-protected a moment ago: fence
  the dead site at every router and stop its database if it still runs, promote the
  standby (measuring how far the dead primary was last seen ahead of what the standby
  received: what may be lost, 0 in zero-loss mode), route, verify a write, and record
  the dead site as needing a resync.
"""

from __future__ import annotations

from typing import Any

from failback.model.plan import StepSpec

SWITCH_BACK_HOW = ("switchover", "failover")


def revert_steps(service: Any, params: dict[str, Any]) -> list[StepSpec]:
    """The way back from ``params.home`` (the failback's target) to ``params.away``."""
    how = params.get("switch_back", "switchover")
    if how not in SWITCH_BACK_HOW:
        raise ValueError(f"unknown way to switch back: {how!r}")
    build = _failover_back if how == "failover" else _switchover_back
    steps = build(service, params)
    renamed = []
    for step in steps:
        step_params = dict(step.params)
        if step_params.get("measure_unavailability"):
            step_params["measure_as"] = "switch_back_write_unavailability_s"
        renamed.append(
            step.model_copy(
                update={
                    "id": f"back-{step.id}",
                    "title": f"back: {step.title}",
                    "params": step_params,
                }
            )
        )
    return renamed


def _switchover_back(service: Any, params: dict[str, Any]) -> list[StepSpec]:
    from failback.plan.common import record_step
    from failback.plan.postgres_plans import switchover_steps
    from failback.plan.router_steps import client_endpoint, traffic_steps

    home, away, db = params["home"], params["away"], params["db"]
    return [
        *traffic_steps(service, to_site=away, away=home, percents=[100], bake_s=0, gated=False),
        *switchover_steps(service, db=db, old=home, new=away, endpoint=client_endpoint(service)),
        record_step(away, []),
    ]


def _failover_back(service: Any, params: dict[str, Any]) -> list[StepSpec]:
    """The unplanned failover's order: fence -> stop if running -> promote -> route ->
    traffic -> verify -> record (the dead site needs a resync before it returns)."""
    from failback.plan.command_plans import command_switch_steps
    from failback.plan.common import record_step
    from failback.plan.router_steps import (
        client_endpoint,
        route_writes_steps,
        stop_writes_steps,
        traffic_steps,
    )

    home, away, db = params["home"], params["away"], params["db"]
    steps = stop_writes_steps(service, home, undo="restore", purpose=f"fence {home}")
    steps.append(StepSpec(
        id=f"fence-db-{home}", title=f"stop {home}'s database if it still runs",
        action="postgres.fence", component=db, site=home,
        why="promise 1: the dead primary must not come back writable while another one is",
    ))  # fmt: skip
    steps.append(StepSpec(
        id=f"promote-{away}", title=f"promote {away}", action="postgres.promote",
        component=db, site=away, params={"measure_loss": True, "relax_sync": True},
        why="measures how far the dead primary was last seen ahead of what it received",
    ))  # fmt: skip
    steps += route_writes_steps(service, away, measure=True, from_site=home)
    steps += traffic_steps(service, to_site=away, away=home, percents=[100], bake_s=0, gated=False)
    steps += command_switch_steps(
        service, from_site=home, to_site=away, promote_is_point_of_no_return=False
    )
    steps.append(StepSpec(
        id=f"verify-{away}",
        title=f"verify a write through the clients' endpoint lands on {away}",
        action="postgres.verify_write", component=db, site=away,
        params={"endpoint": client_endpoint(service)},
    ))  # fmt: skip
    steps.append(record_step(away, [home]))
    return steps
