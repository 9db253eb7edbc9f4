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

Both are procedures of phases (``failback.plan.phases``) from ``params.home`` (the
failback's target, losing the role again) to ``params.away``; every component's driver
builds its own steps, as in any plan.
"""

from __future__ import annotations

from typing import Any

from failback.config import Service
from failback.drivers.planning import RunKind
from failback.model.plan import StepSpec
from failback.plan.common import record_step
from failback.plan.phases import SWITCHOVER, Procedure, expand, shift, unplanned_switch

SWITCH_BACK_HOW = ("switchover", "failover")


def revert_steps(service: Service, params: dict[str, Any]) -> list[StepSpec]:
    """The way back from ``params.home`` (the failback's target) to ``params.away``."""
    how = params.get("switch_back", "switchover")
    if how not in SWITCH_BACK_HOW:
        raise ValueError(f"unknown way to switch back: {how!r}")
    home, away = params["home"], params["away"]
    planned = how == "switchover"
    procedure: Procedure
    if planned:
        procedure = (*shift([100]), *SWITCHOVER, record_step(away, []))
    else:
        # the unplanned failover's order: fence -> stop if running -> promote -> route ->
        # traffic -> verify -> record (the dead site needs a resync before it returns);
        # the switch back is already the run's undo: nothing in it is a point of no return
        procedure = (
            *unplanned_switch(measure_unavailability=True, measure_rto=False),
            record_step(away, [home]),
        )
    steps = expand(
        service, procedure, kind=RunKind.SWITCH_BACK, from_site=home, to_site=away,
        planned=planned, point_of_no_return=planned,
    ).steps  # fmt: skip
    return [_renamed(step) for step in steps]


def _renamed(step: StepSpec) -> StepSpec:
    """The switch back runs inside the failback's run: its steps get their own ids, and
    its write-unavailability is measured under its own name."""
    params = dict(step.params)
    if params.get("measure_unavailability"):
        params["measure_as"] = "switch_back_write_unavailability_s"
    return step.model_copy(
        update={"id": f"back-{step.id}", "title": f"back: {step.title}", "params": params}
    )
