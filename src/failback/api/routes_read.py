"""Read endpoints under /api/v1: status, topology, runs, events. No token needed, except
for the rows of diverged transactions (clients' data).

They observe (read-only) and read the journal; nothing here changes anything.
Status comes from the shared cache (at most a second old, one observation at a time;
see ``StatusCache``) and is awaited without holding a worker thread. Command lines
and outputs (in run reports and events) are shown only to a caller that sent the
token; others get those records without them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse

from failback import __version__
from failback.api.auth import authenticated, require_token
from failback.api.errors import ApiError
from failback.api.state import app_state
from failback.api.views import (
    drills_list,
    event_for,
    report_for,
    run_document,
    run_for,
    run_timeline,
    runs_list,
    topology_document,
)
from failback.report.diverged import changes_json, sql_script
from failback.report.timeline import Timeline

router = APIRouter(prefix="/api/v1", tags=["read"])


@router.get("/health", summary="The server is up (does not observe anything)")
def health(request: Request) -> dict[str, Any]:
    state = app_state(request)
    return {
        "ok": True,
        "version": __version__,
        "read_only": state.settings.token is None,
        "executing_runs": state.launcher.executing(),
    }


@router.get("/status", summary="Every service: active site, components, lag, traffic, run")
async def status(request: Request) -> dict[str, Any]:
    """Observed at most a second ago: each component's role, health and lag, the router's
    traffic split, the run holding the service, and the automatic-failback switch."""
    return await app_state(request).status.aget()


@router.get("/services/{service}", summary="One service's status, observed at most 1 s ago")
async def service_status(service: str, request: Request) -> dict[str, Any]:
    state = app_state(request)
    state.require_service(service)
    doc = await state.status.aget()
    return next(s for s in doc["services"] if s["service"] == service)


@router.get("/cluster", summary="The control plane: members, leader, lease left, etcd health")
def cluster(request: Request) -> dict[str, Any]:
    """Read from etcd at each request (never from the leader: this works on any node, and
    while nobody leads). ``configured: false`` when the topology has no control plane."""
    from failback.status.cluster import cluster_document

    topology = app_state(request).topology
    if topology.control_plane is None:
        return {"configured": False}
    return {"configured": True, **cluster_document(topology)}


@router.get("/topology", summary="Sites, services, components, checks, policies (no options)")
def topology(request: Request) -> dict[str, Any]:
    return topology_document(app_state(request).topology)


@router.get("/runs", summary="Runs, newest first, with their headline measurements")
def runs(
    request: Request,
    service: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    state = app_state(request)
    if service is not None:
        state.require_service(service)
    with state.journal() as journal:
        return {"runs": runs_list(journal, service=service, limit=limit)}


@router.get("/drills", summary="Drills, newest first: site, status, RTO, age")
def drills(
    request: Request,
    service: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
) -> dict[str, Any]:
    """The drill runs (also in /runs, kind ``drill``), with their RTO and age; the last
    one and the policy's verdict are in each service's status (``drill``)."""
    state = app_state(request)
    if service is not None:
        state.require_service(service)
    with state.journal() as journal:
        return {"drills": drills_list(journal, service=service, limit=limit)}


@router.get("/runs/{run_id}", summary="One run: summary, steps with durations, plan, gate")
def run(run_id: int, request: Request) -> dict[str, Any]:
    state = app_state(request)
    with state.journal() as journal:
        record = state.require_run(journal, run_id)
        return run_for(run_document(journal, record), authenticated(request))


@router.get("/runs/{run_id}/report", summary="One run's report (what was measured)")
def run_report(run_id: int, request: Request) -> dict[str, Any]:
    state = app_state(request)
    with state.journal() as journal:
        record = state.require_run(journal, run_id)
        return report_for(run_document(journal, record)["report"], authenticated(request))


@router.get(
    "/runs/{run_id}/timeline",
    summary="One run over time: steps as bars, waits, approvals, write-unavailability,"
    " point of no return, undos, events (seconds since the run's start)",
    response_model=Timeline,
)
def run_timeline_view(run_id: int, request: Request) -> Timeline:
    """What the dashboard draws and ``failback report`` renders as SVG. Holds no step
    output and no diverged row, so it needs no token (see failback.report.timeline)."""
    state = app_state(request)
    with state.journal() as journal:
        record = state.require_run(journal, run_id)
        return run_timeline(journal, record)


@router.get(
    "/runs/{run_id}/diverged",
    summary="What the returning site committed after the fork, captured before the resync"
    " (every row: needs the token)",
    dependencies=[Depends(require_token)],
    response_model=None,
)
def run_diverged(
    run_id: int,
    request: Request,
    format: Literal["json", "sql"] = Query("json", description="json, or sql for review"),
) -> dict[str, Any] | PlainTextResponse:
    state = app_state(request)
    with state.journal() as journal:
        record = state.require_run(journal, run_id)
        summary = record.values.get("diverged")
        capture = journal.diverged(run_id)
    if summary is None and capture is None:
        raise ApiError(
            404,
            f"run {run_id} captured no diverged transactions",
            hint="a failback captures them before it resyncs the returning site",
        )
    document = {**(summary or {}), **(capture or {})}
    if format == "sql":
        return PlainTextResponse(sql_script(run_id, document))
    return {"run_id": run_id, **document, "changes": changes_json(document)}


@router.get("/runs/{run_id}/events", summary="One run's events, oldest first")
def run_events(
    run_id: int, request: Request, limit: int = Query(500, ge=1, le=10000)
) -> dict[str, Any]:
    state = app_state(request)
    with state.journal() as journal:
        state.require_run(journal, run_id)
        rows = journal.events(run_id=run_id, limit=limit)
    return {"events": [event_for(e, authenticated(request)) for e in rows]}


@router.get("/events", summary="Recent events of every run and service, oldest first")
def events(
    request: Request,
    after: int = Query(0, ge=0, description="only events with a larger id"),
    limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    state = app_state(request)
    with state.journal() as journal:
        rows = journal.events(limit=limit)
    return {"events": [event_for(e, authenticated(request)) for e in rows if e["id"] > after]}
