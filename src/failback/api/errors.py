"""Errors as JSON ``{error, hint, kind}``, with the HTTP status the cause deserves.

The same ``FailbackError`` a person would get from the CLI (one line + hint) is what
an API client gets: 404 for an unknown service or run, 409 when the state forbids the
request (a planner refusal, a lock held, a run past its point of no return), 422 for
a request that cannot be done as asked. No traceback ever reaches a client, and no
file-system path either (a CLI message may name the state directory or the topology
file; a client learns nothing from where they are, an attacker does): every absolute
path in an error or hint becomes ``<path>``.
"""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from failback.errors import FailbackError, PlanRefused, SafetyRefusal, StateError, UsageError

log = logging.getLogger("failback.api")

_CHARS = r"[^\s'\"`(),;:]"
_PATH = re.compile(rf"(?<![\w.~/-])(?:(?:~|\.{{1,2}})/|/(?!/|api/v1\b)(?={_CHARS}*/)){_CHARS}+")
"""A path: ``~/...``, ``./...``, or ``/a/b...`` (two segments at least; after ``file:``
too) not inside a word or a URL. API paths (``/api/v1/...``, ``/openapi.json``) stay: a hint
may point at one."""


def scrub_paths(text: str | None) -> str | None:
    """``text`` with every file-system path replaced by ``<path>``."""
    return None if text is None else _PATH.sub("<path>", text)


def error_body(error: str, hint: str | None, kind: str) -> dict[str, str | None]:
    """The JSON body of every error answer, without file-system paths."""
    return {"error": scrub_paths(error), "hint": scrub_paths(hint), "kind": kind}


class ApiError(Exception):
    """An error response decided by the API itself (auth, not found)."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.hint = hint
        self.headers = headers


def status_of(exc: FailbackError) -> int:
    """The HTTP status of a failback error."""
    if isinstance(exc, PlanRefused | StateError | SafetyRefusal):
        return 409
    if isinstance(exc, UsageError):
        return 422
    return 422


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into ``{error, hint, kind}``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.error, exc.hint, "ApiError"),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(FailbackError)
    async def _failback_error(request: Request, exc: FailbackError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.message, exc.hint, type(exc).__name__), status_code=status_of(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        return JSONResponse(
            error_body(f"bad request: {problems}", "see /openapi.json", "Invalid"),
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {
                "error": f"internal error: {type(exc).__name__}",
                "hint": "see the failback serve log; please report it",
                "kind": "InternalError",
            },
            status_code=500,
        )
