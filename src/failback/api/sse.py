"""``GET /api/v1/stream``: server-sent events of status changes and run progress.

The journal is the source of truth and other processes (the CLI, the monitor) write
to it too, so the stream polls it rather than relying on in-process notifications:
every half second it sends new journal events (``event: journal``) and runs whose
row changed (``event: run``, the same document as /api/v1/runs/{id}); about every
second it sends the status (``event: status``) when anything but timestamps changed.
Every payload passes through the redactor, and command lines and outputs are left out
unless the client sent the token (see failback.api.views.run_for). The status comes
from the shared cache, awaited without holding a worker thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from failback.api.auth import authenticated
from failback.api.state import AppState, app_state
from failback.api.views import event_for, run_document, run_for

router = APIRouter(prefix="/api/v1", tags=["read"])

POLL_S = 0.5
STATUS_EVERY = 2  # polls
KEEPALIVE_EVERY = 30  # polls


def _frame(state: AppState, kind: str, data: Any, event_id: int | None = None) -> str:
    text = state.redactor.text(json.dumps(data, default=str))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {text}\n\n"


def _without_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_timestamps(v)
            for k, v in value.items()
            if k not in ("observed_at", "updated_at")
        }
    if isinstance(value, list):
        return [_without_timestamps(v) for v in value]
    return value


class _Cursor:
    """What one client has already been sent."""

    def __init__(self, after: int | None, authenticated: bool) -> None:
        self.after = after
        self.authenticated = authenticated
        self.run_marks: dict[int, float] = {}
        self.status_key: str | None = None


def _poll_journal(state: AppState, cursor: _Cursor) -> list[str]:
    frames: list[str] = []
    with state.journal() as journal:
        rows = journal.events(limit=200)
        if cursor.after is None:  # a new client: from now on
            cursor.after = rows[-1]["id"] if rows else 0
        for event in rows:
            if event["id"] > cursor.after:
                frames.append(
                    _frame(state, "journal", event_for(event, cursor.authenticated), event["id"])
                )
                cursor.after = event["id"]
        for run in journal.list_runs(limit=10):
            if cursor.run_marks.get(run.id) != run.updated_at:
                cursor.run_marks[run.id] = run.updated_at
                doc = run_for(run_document(journal, run), cursor.authenticated)
                frames.append(_frame(state, "run", doc))
    return frames


def _status_frames(state: AppState, cursor: _Cursor, doc: dict[str, Any]) -> list[str]:
    key = json.dumps(_without_timestamps(doc), sort_keys=True, default=str)
    if key == cursor.status_key:
        return []
    cursor.status_key = key
    return [_frame(state, "status", doc)]


@router.get(
    "/stream",
    summary="Server-sent events: status changes and run progress",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    after: int | None = Query(None, ge=0, description="replay journal events after this id"),
    last_event_id: int | None = Header(None, description="set by browsers on reconnection"),
) -> StreamingResponse:
    state = app_state(request)
    cursor = _Cursor(last_event_id if last_event_id is not None else after, authenticated(request))

    async def frames() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        tick = 0
        while not await request.is_disconnected():
            for frame in await anyio.to_thread.run_sync(_poll_journal, state, cursor):
                yield frame
            if tick % STATUS_EVERY == 0:
                for frame in _status_frames(state, cursor, await state.status.aget()):
                    yield frame
            if tick % KEEPALIVE_EVERY == KEEPALIVE_EVERY - 1:
                yield ": keepalive\n\n"
            tick += 1
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
