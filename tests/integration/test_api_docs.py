"""The API's documentation pages work with no network (issue 17, item 4).

The real app served by uvicorn on 127.0.0.1, read through real HTTP: every script,
style sheet, image and link ``/docs`` and ``/redoc`` refer to is on the server itself,
and each answers 200 with the content type a browser needs to use it. The pages hold
no address of another host at all (a CDN, a web font, Swagger's validator).

Needs no database server: the topology is one ``command`` component.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from tests.integration.test_run_timeline import write_topology

EXPECTED_TYPES = {
    "script": ("text/javascript", "application/javascript"),
    "stylesheet": ("text/css",),
    "icon": ("image/png",),
}


class References(HTMLParser):
    """Every URL the page makes a browser load: (what, url)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.found.append(("script", str(a["src"])))
        elif tag == "link" and a.get("href"):
            rel = str(a.get("rel") or "")
            self.found.append(("stylesheet" if "stylesheet" in rel else "icon", str(a["href"])))
        elif tag in ("img", "iframe") and a.get("src"):
            self.found.append((tag, str(a["src"])))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    config = write_topology(Path(tmp_path_factory.mktemp("docs")))
    settings = resolve_settings(load_topology(config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        server.stop()


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_page_loads_everything_from_the_server(client: httpx.Client, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text and "https://" not in response.text
    refs = References()
    refs.feed(response.text)
    kinds = {kind for kind, _ in refs.found}
    assert "script" in kinds, refs.found
    if page == "/docs":
        assert "stylesheet" in kinds, refs.found
    for kind, url in refs.found:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200, (url, asset.status_code)
        content_type = asset.headers["content-type"].split(";")[0]
        assert content_type in EXPECTED_TYPES[kind], (url, content_type)
        assert len(asset.content) > 0


def test_the_swagger_page_reads_the_servers_openapi_document(client: httpx.Client) -> None:
    page = client.get("/docs").text
    assert "'/openapi.json'" in page or '"/openapi.json"' in page
    assert client.get("/openapi.json").json()["info"]["title"] == "failback"
    # and the pages are not API endpoints
    assert "/docs" not in client.get("/openapi.json").json()["paths"]
