"""The FastAPI application: read and change endpoints, event stream, metrics, dashboard.

Built by ``create_app(settings)``; ``failback serve`` runs it with uvicorn, and the
monitor can run it beside its loop (failback.api.server.ApiServer). The app holds no
logic of its own: status comes from failback.status.document, runs start through
failback.engine.starter, reports come from failback.report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from failback import __version__
from failback.api import docs, errors, metrics, routes_console, routes_read, routes_write, sse
from failback.api.guard import GuardMiddleware
from failback.api.redact import RedactMiddleware
from failback.api.settings import ApiSettings
from failback.api.state import AppState

DESCRIPTION = """\
The HTTP interface of **failback**: read where each service runs and how its runs went;
start a failover or a failback, approve a gate, abort or resume a run.

Read endpoints need nothing (with the token, run reports and events also show command
lines and outputs). Endpoints that change things need `Authorization: Bearer TOKEN`
(`$FAILBACK_API_TOKEN` or the topology's `api.token_file`). Request bodies are at most
64 KiB. Errors are JSON `{error, hint, kind}`. See docs/api.md.
"""


def static_dir() -> str:
    """The dashboard's files, shipped as package data (no build step)."""
    return str(resources.files("failback.api") / "static")


def create_app(settings: ApiSettings) -> FastAPI:
    """A new app serving the topology and state directory of ``settings``."""
    state = AppState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # the connections status observes through (SSH agents) end with it
            state.hosts.close()

    app = FastAPI(
        title="failback",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # docs.install serves /docs and /redoc without a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.failback = state
    errors.install(app)
    docs.install(app)
    app.include_router(routes_read.router)
    app.include_router(routes_console.router)
    app.include_router(routes_write.router)
    app.include_router(sse.router)
    app.include_router(metrics.router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = resources.files("failback.api") / "static" / "index.html"
        return HTMLResponse(page.read_text(encoding="utf-8"))

    app.add_middleware(RedactMiddleware, redactor=state.redactor)
    # outermost: refuses an anonymous change or an oversized body before it is read
    app.add_middleware(GuardMiddleware, token=settings.token)
    return app
