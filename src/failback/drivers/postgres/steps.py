"""The steps a PostgreSQL pair contributes to a plan, phase by phase.

The planner orders the phases (fence -> stop -> replay -> promote -> route -> re-protect,
docs/concepts.md); this module says what the database does in each: which site, which
action, and why the step is there. ``from_site`` loses the primary role and
``to_site`` gains it, in a failover, a failback and a switch back alike.
"""

from __future__ import annotations

from collections.abc import Callable

from failback.drivers.planning import Phase, PlanRequest, RunKind
from failback.model.plan import StepSpec


def _preflight(r: PlanRequest) -> StepSpec:
    """Gate: the site is what the plan assumes (role, credentials, same cluster, pgdata)."""
    if r.kind is RunKind.FAILBACK:  # the current primary, before anything changes
        site, expect, compare = r.from_site, "primary", [r.to_site]
        title = f"preflight: {site} is the primary of the same cluster"
    elif r.planned:
        site, expect, compare = r.to_site, "standby", [r.from_site]
        title = f"preflight: {site} is a standby of the same cluster"
    else:  # the old primary may be gone: only the target must be usable
        site, expect, compare = r.to_site, "any", []
        title = f"preflight: {site} is usable"
    return StepSpec(
        id="preflight", title=title, action="postgres.preflight", component=r.component,
        site=site, kind="gate", params={"expect": expect, "compare": compare},
    )  # fmt: skip


def _capture(r: PlanRequest) -> StepSpec:
    """The returning site's commits after the fork, read before the resync erases them."""
    return StepSpec(
        id=f"capture-{r.to_site}",
        title=f"capture what {r.to_site} committed after the fork (before the resync)",
        action="postgres.capture_diverged", component=r.component, site=r.to_site,
        params={"source": r.from_site},
        why="a rewind or re-clone erases the commits the other site never received",
    )  # fmt: skip


def _resync(r: PlanRequest) -> StepSpec:
    return StepSpec(
        id=f"resync-{r.to_site}",
        title=f"resync {r.to_site} from {r.from_site} (rewind or re-clone)",
        action="postgres.resync", component=r.component, site=r.to_site,
        params={"source": r.from_site},
    )  # fmt: skip


def _catchup(r: PlanRequest) -> StepSpec:
    """Wait until the site gaining the role lags the primary by less than max_lag_bytes."""
    return StepSpec(
        id=f"catchup-{r.to_site}", title=f"{r.to_site} catches up with {r.from_site}",
        action="postgres.catchup", component=r.component, site=r.to_site,
        params={"source": r.from_site},
    )  # fmt: skip


def _checkpoint(r: PlanRequest) -> StepSpec:
    return StepSpec(
        id=f"checkpoint-{r.from_site}",
        title=f"checkpoint {r.from_site} so that its final stop is quick",
        action="postgres.checkpoint", component=r.component, site=r.from_site,
        params={"standby": r.to_site},
    )  # fmt: skip


def _stop(r: PlanRequest) -> StepSpec:
    return StepSpec(
        id=f"stop-{r.from_site}",
        title=f"stop {r.from_site} cleanly and read its final WAL position",
        action="postgres.stop", component=r.component, site=r.from_site,
        why="a clean stop ships the last WAL; its final position is what must be replayed",
    )  # fmt: skip


def _replay(r: PlanRequest) -> StepSpec:
    return StepSpec(
        id=f"replay-{r.to_site}", title=f"wait until {r.to_site} replayed the exact final position",
        action="postgres.wait_replay", component=r.component, site=r.to_site,
        params={"source": r.from_site},
        why="promise 2: not one acknowledged write may be left behind",
    )  # fmt: skip


def _fence(r: PlanRequest) -> StepSpec:
    """An unplanned switch cannot stop the old primary cleanly: stop it if it still runs."""
    return StepSpec(
        id=f"fence-db-{r.from_site}", title=f"stop {r.from_site}'s database if it still runs",
        action="postgres.fence", component=r.component, site=r.from_site,
        why="promise 1: the dead primary must not come back writable while another one is",
    )  # fmt: skip


def _promote(r: PlanRequest) -> StepSpec:
    site = r.to_site
    if r.planned:  # it replayed the exact final position: nothing can be lost
        return StepSpec(
            id=f"promote-{site}", title=f"promote {site}", action="postgres.promote",
            component=r.component, site=site, point_of_no_return=r.point_of_no_return,
        )  # fmt: skip
    return StepSpec(
        id=f"promote-{site}", title=f"promote {site}", action="postgres.promote",
        component=r.component, site=site, params={"measure_loss": True, "relax_sync": True},
        point_of_no_return=r.point_of_no_return,
        why="measures how far the dead primary was last seen ahead of what it received",
    )  # fmt: skip


def _reprotect(r: PlanRequest) -> StepSpec:
    return StepSpec(
        id=f"reprotect-{r.from_site}",
        title=f"re-protect: {r.from_site} becomes a standby of {r.to_site}",
        action="postgres.resync", component=r.component, site=r.from_site,
        params={"source": r.to_site},
    )  # fmt: skip


def _verify(r: PlanRequest) -> StepSpec:
    params: dict[str, object] = {"endpoint": r.endpoint}
    if r.measure:  # an unplanned failover's time to recovery ends with this write
        params["measure_rto"] = True
    return StepSpec(
        id=f"verify-{r.to_site}",
        title=f"verify a write through the clients' endpoint lands on {r.to_site}",
        action="postgres.verify_write", component=r.component, site=r.to_site, params=params,
    )  # fmt: skip


_BUILDERS: dict[Phase, Callable[[PlanRequest], StepSpec]] = {
    Phase.PREFLIGHT: _preflight,
    Phase.CAPTURE: _capture,
    Phase.RESYNC: _resync,
    Phase.CATCHUP: _catchup,
    Phase.CHECKPOINT: _checkpoint,
    Phase.STOP: _stop,
    Phase.REPLAY: _replay,
    Phase.FENCE: _fence,
    Phase.PROMOTE: _promote,
    Phase.REPROTECT: _reprotect,
    Phase.VERIFY: _verify,
}


def database_steps(request: PlanRequest) -> list[StepSpec]:
    """The database's step in one phase (none in the phases it takes no part in)."""
    build = _BUILDERS.get(request.phase)
    return [build(request)] if build is not None else []
