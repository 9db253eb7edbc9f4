"""The steps a kv store contributes to each phase of a plan.

The planner owns the order of the phases (fence -> stop -> replay -> promote -> route
-> re-protect -> verify) and calls ``kv_steps`` once per phase; this module says what
the store does in that phase, at which site. ``from_site`` loses the primary role,
``to_site`` gains it, in every kind of run. A phase the store takes no part in
(routing, traffic shifting...) gives no step.

* a planned switch (a planned failover, a failback, the way back of a failback):
  preflight -> catch up -> stop the old primary -> replay its final position ->
  promote -> re-protect the old primary (a replica of the new one) -> verify;
* an unplanned failover (the old primary failed): preflight -> fence the old site ->
  promote -> verify; the old site needs a resync before it returns (the planner
  records it, as no re-protect step was produced);
* a failback first resyncs the returning site from the active one (which lifts the
  fence the failover left: a replica refuses writes by its role), then switches over.
"""

from __future__ import annotations

from collections.abc import Callable

from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec


def _step(request: PlanRequest, action: str, site: str, title: str, **extra: object) -> StepSpec:
    """One step of ``request.component`` at ``site``; its id is unique in the plan."""
    return StepSpec(
        id=f"{request.phase.value}-{request.component}-{site}",
        title=title,
        action=action,
        component=request.component,
        site=site,
        **extra,  # type: ignore[arg-type]
    )


def _preflight(r: PlanRequest) -> list[StepSpec]:
    if r.kind is RunKind.FAILBACK:
        site, params = r.from_site, {"expect": "primary"}
        title = f"preflight: {r.component} at {site} is the primary"
    elif r.planned:
        site, params = r.to_site, {"expect": "replica", "source": r.from_site}
        title = f"preflight: {r.component} at {site} is a replica of {r.from_site}"
    else:
        site, params = r.to_site, {"expect": "replica"}
        title = f"preflight: {r.component} at {site} is a usable replica"
    return [_step(r, "kv.preflight", site, title, kind="gate", params=params)]


def _resync(r: PlanRequest) -> list[StepSpec]:
    return [
        _step(
            r, "kv.resync", r.to_site, f"resync {r.component} at {r.to_site} from {r.from_site}",
            params={"source": r.from_site},
        )
    ]  # fmt: skip


def _catchup(r: PlanRequest) -> list[StepSpec]:
    if not r.planned:
        return []
    return [
        _step(
            r, "kv.catchup", r.to_site, f"{r.component} at {r.to_site} catches up",
            params={"source": r.from_site},
        )
    ]  # fmt: skip


def _stop(r: PlanRequest) -> list[StepSpec]:
    if not r.planned:
        return []
    return [
        _step(
            r, "kv.stop", r.from_site, f"stop {r.component} at {r.from_site} (final position)",
            why="a stopped primary takes no more writes: its position is final",
        )
    ]  # fmt: skip


def _fence(r: PlanRequest) -> list[StepSpec]:
    if r.planned:
        return []
    return [
        _step(
            r, "kv.fence", r.from_site, f"fence {r.component} at {r.from_site}",
            why="promise 1: the failed primary must not take writes if it comes back",
        )
    ]  # fmt: skip


def _replay(r: PlanRequest) -> list[StepSpec]:
    if not r.planned:
        return []
    return [
        _step(
            r, "kv.replay", r.to_site,
            f"{r.component} at {r.to_site} replays {r.from_site}'s final position",
            params={"source": r.from_site},
            why="promise 2: not one acknowledged write may be left behind",
        )
    ]  # fmt: skip


def _promote(r: PlanRequest) -> list[StepSpec]:
    return [
        _step(
            r, "kv.promote", r.to_site, f"promote {r.component} at {r.to_site}",
            point_of_no_return=r.point_of_no_return,
        )
    ]  # fmt: skip


def _reprotect(r: PlanRequest) -> list[StepSpec]:
    if not r.planned:
        return []
    return [
        _step(
            r, "kv.resync", r.from_site,
            f"re-protect: {r.component} at {r.from_site} becomes a replica of {r.to_site}",
            params={"source": r.to_site},
        )
    ]  # fmt: skip


def _verify(r: PlanRequest) -> list[StepSpec]:
    return [
        _step(r, "kv.verify", r.to_site, f"verify a write to {r.component} lands on {r.to_site}")
    ]


PHASES: dict[Phase, Callable[[PlanRequest], list[StepSpec]]] = {
    Phase.PREFLIGHT: _preflight,
    Phase.RESYNC: _resync,
    Phase.CATCHUP: _catchup,
    Phase.STOP: _stop,
    Phase.FENCE: _fence,
    Phase.REPLAY: _replay,
    Phase.PROMOTE: _promote,
    Phase.REPROTECT: _reprotect,
    Phase.VERIFY: _verify,
}
"""What the store does in each phase it takes part in."""


def kv_steps(request: PlanRequest) -> list[StepSpec]:
    """The steps of one kv component in one phase (none in the other phases)."""
    build = PHASES.get(request.phase)
    return build(request) if build is not None else []
