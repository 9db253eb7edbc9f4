"""Read endpoints the console needs: a service's health and lag history, and the plan a
run would follow, shown in the confirmation before a person starts it.

Both are read-only (no token): the history is read from the journal, the plan is
made by the one path runs start through (failback.engine.starter.make_plan), which
observes and plans without side effects, so what the confirmation shows is what
``POST .../failover|failback`` would plan from the same observation.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from failback.api.errors import ApiError
from failback.api.state import app_state
from failback.api.views import public_plan
from failback.engine.starter import make_plan
from failback.store.base import HISTORY_BUCKET_S

router = APIRouter(prefix="/api/v1", tags=["read"])

HISTORY_DEFAULT_S = 3600.0
"""What ``/history`` returns without ``since``: the last hour."""
PLANS_AT_ONCE = 2
_planning = threading.BoundedSemaphore(PLANS_AT_ONCE)
"""Planning observes the service (seconds when a database does not answer) in one of the
server's worker threads; a read anyone may send must not be able to take them all, so
at most ``PLANS_AT_ONCE`` plans are made at a time and a request beyond gets a 429."""


@router.get(
    "/services/{service}/history",
    summary="Each component's health and replication lag over time, with the runs",
)
def history(
    service: str,
    request: Request,
    since: float | None = Query(
        None, ge=0, description="unix time of the oldest sample (default: an hour ago)"
    ),
) -> dict[str, Any]:
    """Downsampled samples (the worst of each ``bucket_s`` interval: unhealthy wins, the
    largest lag wins), kept 24 hours, recorded by the processes that observe on this
    machine (the monitor, this server); and the failovers and failbacks that overlap
    the window, to mark on the charts."""
    state = app_state(request)
    state.require_service(service)
    start = time.time() - HISTORY_DEFAULT_S if since is None else since
    with state.journal() as journal:
        samples = journal.history(service, start)
        runs = [
            {
                "id": r.id,
                "kind": r.kind,
                "status": r.status,
                "from_site": r.values.get("from_site"),
                "to_site": r.values.get("to_site"),
                "created_at": r.created_at,
                "finished_at": r.finished_at,
            }
            for r in journal.list_runs(service=service, limit=200)
            if r.kind in ("failover", "failback") and (r.finished_at or time.time()) >= start
        ]
    return {
        "service": service,
        "since": start,
        "bucket_s": HISTORY_BUCKET_S,
        "samples": samples,
        "runs": sorted(runs, key=lambda r: r["id"]),
    }


@router.get(
    "/services/{service}/plan",
    summary="The plan a failover or failback would follow now (starts nothing)",
    responses={
        404: {"description": "unknown service"},
        409: {"description": "the planner refuses (its words)"},
        429: {"description": "too many plans being made at once"},
    },
)
def plan(
    service: str,
    request: Request,
    kind: Literal["failover", "failback"] = Query(..., description="failover or failback"),
    planned: bool = False,
    force: bool = False,
    accept_data_loss: bool = False,
    approval: bool | None = None,
) -> dict[str, Any]:
    """Observe (read-only) and plan as ``POST /services/{service}/{kind}`` would with the
    same options; 409 with the planner's words when it would refuse. Step parameters
    are left out, except the question, window and checks a person reads."""
    state = app_state(request)
    state.require_service(service)
    options: dict[str, Any] = (
        {"planned": planned, "force": force, "accept_data_loss": accept_data_loss}
        if kind == "failover"
        else {"approval": approval, "accept_data_loss": accept_data_loss}
    )
    if not _planning.acquire(blocking=False):
        raise ApiError(
            429, f"{PLANS_AT_ONCE} plans are being made already", hint="try again in a moment"
        )
    try:
        with state.journal() as journal:
            made = make_plan(kind, service, state.topology, journal, hosts=state.hosts, **options)
    finally:
        _planning.release()
    return {"service": service, "kind": kind, "plan": public_plan(made.model_dump(mode="json"))}
