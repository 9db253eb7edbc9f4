"""The API's documentation pages, served with no network: ``/docs`` (Swagger UI) and
``/redoc`` (ReDoc).

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a
machine without internet access, which is most production networks and exactly where
failback runs during an incident. The assets come from the ``fastapi-offline`` package
(a pip dependency: Swagger UI's bundle and style sheet, ReDoc's standalone script, a
favicon) and are served under ``/docs-assets/``; the pages refer to nothing else (no
web font, no validator badge).
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
SWAGGER_PARAMETERS = {"validatorUrl": None}
"""Swagger UI would otherwise ask validator.swagger.io to check the document."""


def assets_dir() -> str:
    """Where ``fastapi-offline`` keeps the Swagger UI and ReDoc files it ships."""
    return str(resources.files("fastapi_offline") / "static")


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and ``/redoc`` from local assets (the app is made with
    ``docs_url=None, redoc_url=None`` so that FastAPI's CDN pages are not there)."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=None,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
