"""The steps that switch a service back to the site it came from (undo until commit).

Used when the observation window of a failback ends badly: a gate failed, or a person
ran ``failback abort``. The way back is the same zero-loss switchover the failback
used, the other way round: the former primary was re-protected as a streaming
standby, so nothing acknowledged is lost.
"""

from __future__ import annotations

from typing import Any

from failback.plan.model import StepSpec


def revert_steps(service: Any, params: dict[str, Any]) -> list[StepSpec]:
    from failback.plan.common import record_step
    from failback.plan.postgres_plans import switchover_steps
    from failback.plan.router_steps import client_endpoint, traffic_steps

    home, away, db = params["home"], params["away"], params["db"]
    steps = [
        *traffic_steps(service, to_site=away, away=home, percents=[100], bake_s=0, gated=False),
        *switchover_steps(service, db=db, old=home, new=away, endpoint=client_endpoint(service)),
        record_step(away, []),
    ]
    renamed = []
    for step in steps:
        params = dict(step.params)
        if params.get("measure_unavailability"):
            params["measure_as"] = "switch_back_write_unavailability_s"
        renamed.append(
            step.model_copy(
                update={"id": f"back-{step.id}", "title": f"back: {step.title}", "params": params}
            )
        )
    return renamed
