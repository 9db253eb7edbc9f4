"""The live dashboard in headless Chromium, against a real lab (GitHub issue 6).

Debian's chromium (/usr/bin/chromium, installed by scripts/setup.sh) is driven by
Playwright's Python package; no browser is ever downloaded. The page is served by the
real app on a real port; the lab is real PostgreSQL, HAProxy and PgBouncer.

The story: the service runs away from home (a planned failover through the API); the
page shows both sites; a failback with an approval gate is started; a person clicks
Approve, confirms, types the token once; the page shows the run reach ``succeeded``.
Screenshots of each stage are kept under test-artifacts/dashboard/ (git-ignored).
Waits are Playwright's bounded waits for what the page shows; nothing is timed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from failback.api import ApiServer
from tests.conftest import REPO
from tests.integration.browser import launched_chromium
from tests.integration.labfixtures import Lab, lab_base, new_lab
from tests.integration.test_api import TOKEN, auth, start_server, wait_run

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-dash-") as root:
        yield new_lab(root)


@pytest.fixture(scope="module")
def server(lab: Lab) -> Iterator[ApiServer]:
    srv = start_server(lab)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_approve_a_failback_until_it_succeeds(
    lab: Lab, server: ApiServer, page: Any
) -> None:
    client = httpx.Client(base_url=server.url, timeout=60)
    started = client.post("/api/v1/services/app/failover", headers=auth(), json={"planned": True})
    assert started.status_code == 202, started.text
    assert wait_run(client, started.json()["run_id"])["run"]["status"] == "succeeded"

    # both sites, side by side, with each component's role, health, lag and traffic
    page.goto(server.url + "/")
    service = page.locator('[data-service="app"]')
    dc1, dc2 = service.locator('[data-site="dc1"]'), service.locator('[data-site="dc2"]')
    dc1.wait_for()
    dc2.wait_for()
    page.locator('#connection:has-text("live")').wait_for()
    assert service.get_attribute("data-service") == "app"
    dc2.locator('[data-component="db"] [data-role="primary"]').wait_for()
    dc1.locator('[data-component="db"] [data-role="standby"]').wait_for()
    weight = '[data-component="router"] [data-weight]'
    assert dc2.locator(weight).get_attribute("data-weight") == "1"
    assert dc1.locator(weight).get_attribute("data-weight") == "0"
    assert "lag" in dc1.inner_text() and "up" in dc1.inner_text()
    assert re.search(r"DEGRADED", service.inner_text())
    shot(page, "01-away-from-home")

    # a failback with an approval gate: the page offers the Approve button (live update)
    started = client.post("/api/v1/services/app/failback", headers=auth(), json={"approval": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    button = page.locator(f'#approve-button[data-run-id="{run_id}"]')
    button.wait_for()
    page.locator(f'#current [data-run-id="{run_id}"] [data-step][data-status="waiting"]').wait_for()
    shot(page, "02-waiting-for-approval")

    # confirmation, then the token, asked once: a wrong one is refused and asked again
    button.click()
    dialog = page.locator("#confirm")
    dialog.wait_for()
    assert f"run {run_id}" in page.locator("#confirm-title").inner_text()
    page.fill("#token-input", "not-the-token")
    page.click("#confirm-ok")
    page.locator('#confirm-error:has-text("wrong API token")').wait_for()
    page.fill("#token-input", TOKEN)
    shot(page, "03-confirm-with-token")
    page.click("#confirm-ok")

    # the run continues and the page shows it succeed, the service home again
    page.locator(f'#current [data-run-id="{run_id}"] [data-run-status="succeeded"]').wait_for()
    service.locator('[data-degraded="false"]').wait_for()
    dc1.locator('[data-component="db"] [data-role="primary"]').wait_for()
    row = page.locator(f'#history tr[data-run-id="{run_id}"]')
    row.locator('.status:has-text("succeeded")').wait_for()
    unavailable = row.locator("[data-write-unavailability]").get_attribute(
        "data-write-unavailability"
    )
    assert unavailable and float(unavailable) > 0
    done = page.locator(f'#current [data-run-id="{run_id}"] [data-step]')
    statuses = {done.nth(i).get_attribute("data-status") for i in range(done.count())}
    assert statuses <= {"done", "skipped"}, statuses
    assert page.evaluate("sessionStorage.getItem('failback-api-token')") == TOKEN
    shot(page, "04-failback-succeeded")

    # what the page showed is what the API says
    doc = client.get(f"/api/v1/runs/{run_id}").json()
    assert doc["run"]["status"] == "succeeded"
    events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
    approvals = [e for e in events if e["kind"] == "gate.approved"]
    assert approvals and "dashboard" in approvals[0]["message"]
    assert TOKEN not in json.dumps(events)
    client.close()


def test_dashboard_is_served_without_a_build_step(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        index = client.get("/")
        assert index.status_code == 200 and "<title>failback</title>" in index.text
        for asset in ("/static/dashboard.js", "/static/dashboard.css"):
            assert client.get(asset).status_code == 200, asset
