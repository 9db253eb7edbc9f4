"""Mutating endpoints: start failover/failback, approve, abort, resume, the auto switch,
the after_incident mark.

Every one needs ``Authorization: Bearer TOKEN``. Runs start through
failback.engine.starter (the one observe-plan-create path the CLI and the monitor
use) and execute in a background thread: the answer is 202 with the run id, and the
run's progress is at /api/v1/runs/{id} and on the event stream.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from failback.api.auth import require_token
from failback.api.errors import ApiError
from failback.api.state import AppState, app_state
from failback.baseline.incident import clear_mark, set_mark
from failback.engine.drill_starter import create_drill_run, keep_for_seconds, make_drill_plan
from failback.engine.executor import Executor, RunProcessLock, refuse_forward
from failback.engine.starter import create_run, make_plan
from failback.errors import StateError
from failback.model.states import TERMINAL
from failback.status.document import set_auto_failback

router = APIRouter(prefix="/api/v1", tags=["change"], dependencies=[Depends(require_token)])

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no `Authorization: Bearer TOKEN`"},
    403: {"description": "wrong token, or the server has none (read-only)"},
}
_START: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    404: {"description": "unknown service"},
    409: {"description": "refused by the planner, or another run holds the service"},
    422: {"description": "cannot be done as asked (e.g. credentials do not work)"},
}
_RUN: dict[int | str, dict[str, Any]] = {
    **_UNAUTHORIZED,
    404: {"description": "unknown run"},
    409: {"description": "the run's state forbids it"},
}


class FailoverRequest(BaseModel):
    """Options of `failback failover`."""

    planned: bool = Field(False, description="zero-loss move of a healthy active site")
    force: bool = Field(False, description="fail over although the active site looks healthy")
    accept_data_loss: bool = Field(
        False, description="fail over to a site never resynced, losing the writes it lacks"
    )


class FailbackRequest(BaseModel):
    """Options of `failback failback`."""

    approval: bool | None = Field(
        None,
        description="true: add an approval gate before the switchover whatever the policy;"
        " false or null: the policy decides (a gate it requires cannot be removed)",
    )
    accept_data_loss: bool = Field(
        False,
        description="resync the returning site even when what it committed after the failover"
        " cannot be captured first (instead of waiting for approval)",
    )


class DrillBody(BaseModel):
    """Options of `failback drill`."""

    site: str | None = Field(None, description="site whose standby is copied (default: standby)")
    keep_for: str = Field("0s", description="how long the promoted copy stays up, e.g. 10m")
    dir: str | None = Field(
        None, description="absolute directory on the standby's machine for the copy"
    )


class ApproveRequest(BaseModel):
    by: str = Field("api", max_length=100, description="who approves (recorded in the journal)")


class AbortRequest(BaseModel):
    force: bool = Field(False, description="end a run past its point of no return without undo")


class SwitchRequest(BaseModel):
    reason: str = Field("", max_length=500, description="why (shown in status and events)")
    by: str = Field("api", max_length=100, description="who")


def _started(state: AppState, run_id: int, status: str = "running") -> dict[str, Any]:
    state.launcher.start(run_id)
    return {
        "run_id": run_id,
        "status": status,
        "links": {"run": f"/api/v1/runs/{run_id}", "stream": "/api/v1/stream"},
    }


def _start(state: AppState, kind: str, service: str, **plan_options: Any) -> dict[str, Any]:
    state.require_service(service)
    with state.journal() as journal:
        plan = make_plan(kind, service, state.topology, journal, hosts=state.hosts, **plan_options)
        executor = Executor(journal)
        options = {k: v for k, v in plan_options.items() if k != "approval"}
        run_id = create_run(executor, state.topology, plan, **options, started_by="api")
    return _started(state, run_id)


@router.post(
    "/services/{service}/failover", status_code=202, responses=_START, summary="Start a failover"
)
def failover(service: str, request: Request, body: FailoverRequest | None = None) -> dict[str, Any]:
    """Move the service from its active site to the other one (202: the run started)."""
    opts = body or FailoverRequest()
    return _start(app_state(request), "failover", service, **opts.model_dump())


@router.post(
    "/services/{service}/failback", status_code=202, responses=_START, summary="Start a failback"
)
def failback(service: str, request: Request, body: FailbackRequest | None = None) -> dict[str, Any]:
    """Bring the service home: resync, validate, switch with no lost write, re-protect."""
    opts = body or FailbackRequest()
    return _start(
        app_state(request), "failback", service, approval=opts.approval,
        accept_data_loss=opts.accept_data_loss,
    )  # fmt: skip


@router.post(
    "/services/{service}/drill", status_code=202, responses=_START, summary="Start a drill"
)
def drill(service: str, request: Request, body: DrillBody | None = None) -> dict[str, Any]:
    """Rehearse a takeover on a copy of the standby (production untouched; 202: started).
    Refused (409) for the active site, an unhealthy standby, too little free space."""
    state = app_state(request)
    state.require_service(service)
    opts = body or DrillBody()
    keep = keep_for_seconds(opts.keep_for)
    if opts.dir is not None and not opts.dir.startswith("/"):
        raise ApiError(422, f"dir {opts.dir!r} is not an absolute path", hint="e.g. /srv/scratch")
    with state.journal() as journal:
        plan, _ = make_drill_plan(
            service, state.topology, journal, site=opts.site, keep_for_s=keep, parent=opts.dir,
            hosts=state.hosts,
        )  # fmt: skip
        run_id = create_drill_run(
            Executor(journal), state.topology, plan, keep_for_s=keep, parent=opts.dir, by="api"
        )
    return _started(state, run_id)


@router.post(
    "/runs/{run_id}/approve", status_code=202, responses=_RUN, summary="Approve the waiting gate"
)
def approve(run_id: int, request: Request, body: ApproveRequest | None = None) -> dict[str, Any]:
    """Record the approval of the gate the run waits at, then continue the run."""
    state = app_state(request)
    by = (body or ApproveRequest()).by
    with state.journal() as journal:
        state.require_run(journal, run_id)
        step = Executor(journal).approve(run_id, by)
    return {**_started(state, run_id), "approved": step}


@router.post("/runs/{run_id}/resume", status_code=202, responses=_RUN, summary="Resume a run")
def resume(run_id: int, request: Request) -> dict[str, Any]:
    """Continue an interrupted or failed run where it stopped (no step is repeated)."""
    state = app_state(request)
    with state.journal() as journal:
        run = state.require_run(journal, run_id)
        if run.status in TERMINAL:
            raise ApiError(409, f"run {run_id} is already {run.status}", hint="nothing to resume")
        if run.status == "waiting-approval":
            raise ApiError(
                409,
                f"run {run_id} waits for approval",
                hint=f"POST /api/v1/runs/{run_id}/approve (or abort it)",
            )
        if RunProcessLock(state.settings.state_dir, run_id).is_held_elsewhere():
            raise ApiError(409, f"run {run_id} is being executed right now", hint="wait for it")
        try:
            refuse_forward(run)  # it began undoing: only an abort finishes it
        except StateError as exc:
            raise ApiError(
                409, exc.message, hint=f"POST /api/v1/runs/{run_id}/abort finishes the undo"
            ) from exc
    return _started(state, run_id)


@router.post("/runs/{run_id}/abort", responses=_RUN, summary="Abort a run (undo its steps)")
def abort(run_id: int, request: Request, body: AbortRequest | None = None) -> dict[str, Any]:
    """Undo what the run applied, back to a safe state; refused past the point of no return
    unless ``force``. Answers when the undo is over, with the run's final status."""
    state = app_state(request)
    with state.journal() as journal:
        state.require_run(journal, run_id)
        outcome = Executor(journal).abort(run_id, force=(body or AbortRequest()).force)
    return {
        "run_id": run_id,
        "status": outcome.status,
        "error": outcome.error,
        "hint": outcome.hint,
    }


def _switch(service: str, request: Request, body: SwitchRequest | None, enabled: bool) -> Any:
    state = app_state(request)
    state.require_service(service)
    opts = body or SwitchRequest()
    with state.journal() as journal:
        doc = set_auto_failback(
            journal, state.topology, service, enabled=enabled, reason=opts.reason, by=opts.by
        )
    return {"service": service, "auto_failback": doc}


@router.post(
    "/services/{service}/auto-failback/enable",
    responses={**_UNAUTHORIZED, 404: {"description": "unknown service"}},
    summary="Allow automatic failback again (when the policy is automatic)",
)
def enable_auto_failback(
    service: str, request: Request, body: SwitchRequest | None = None
) -> dict[str, Any]:
    return dict(_switch(service, request, body, True))


@router.post(
    "/services/{service}/auto-failback/disable",
    responses={**_UNAUTHORIZED, 404: {"description": "unknown service"}},
    summary="Suspend automatic failback of the service",
)
def disable_auto_failback(
    service: str, request: Request, body: SwitchRequest | None = None
) -> dict[str, Any]:
    return dict(_switch(service, request, body, False))


class IncidentRequest(BaseModel):
    """Who marks the service after an incident, and why."""

    reason: str = Field("", max_length=500, description="why (shown in the status and events)")
    by: str = Field("api", max_length=100, description="who (recorded in the journal)")


@router.post(
    "/services/{service}/incident",
    responses={**_UNAUTHORIZED, 404: {"description": "unknown service"}},
    summary="Mark the service after_incident: its next failback carries the clean_room gate",
)
def mark_incident(
    service: str, request: Request, body: IncidentRequest | None = None
) -> dict[str, Any]:
    """Like `failback incident mark`: the next failback stops at the clean_room gate,
    which compares the primary site with its baseline and waits for a person."""
    state = app_state(request)
    state.require_service(service)
    opts = body or IncidentRequest()
    with state.journal() as journal:
        mark = set_mark(journal, state.topology, service, reason=opts.reason, by=opts.by)
        holder = journal.lock_holder(service)
    return {"service": service, "after_incident": mark, "run_in_progress": holder}


@router.delete(
    "/services/{service}/incident",
    responses={**_UNAUTHORIZED, 404: {"description": "unknown service"}},
    summary="Clear the after_incident mark",
)
def clear_incident(service: str, request: Request, by: str = "api") -> dict[str, Any]:
    """Like `failback incident clear`; ``cleared`` is false when there was no mark."""
    state = app_state(request)
    state.require_service(service)
    primary = state.topology.service(service).primary_site
    with state.journal() as journal:
        was = clear_mark(journal, service, primary, by=by[:100], why="cleared through the API")
    return {"service": service, "cleared": was is not None, "was": was}
