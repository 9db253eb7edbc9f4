"""The console (issue 17, item 2) in headless Chromium, against a real lab.

Debian's chromium (/usr/bin/chromium) driven by Playwright's Python package; no browser
is downloaded. The page is served by the real app on a real port; the lab is real
PostgreSQL, HAProxy and PgBouncer, shared by the tests of this module.

Two servers share the lab's state directory: one with the lab's topology (a 3 s
observation window), one with a copy whose observation window is 60 s, so that a
failback started from the page can be aborted inside its window whatever the load.
Every wait is Playwright's bounded wait for what the page shows (``expect``), never a
sleep; screenshots of each stage go to test-artifacts/console/ (git-ignored).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from tests.conftest import REPO
from tests.integration.browser import launched_chromium
from tests.integration.labfixtures import Lab, lab_base, new_lab, with_policy
from tests.integration.test_api import TOKEN, auth, fresh_status, wait_run

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / "test-artifacts" / "console"
WAIT_MS = 180_000


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-console-") as root:
        yield new_lab(root)


def serve(config: Path) -> ApiServer:
    settings = resolve_settings(
        load_topology(config), listen="127.0.0.1:0", environ={"FAILBACK_API_TOKEN": TOKEN}
    )
    return ApiServer(settings, log_level="warning").start()


@pytest.fixture(scope="module")
def server(lab: Lab) -> Iterator[ApiServer]:
    srv = serve(lab.config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def observing_server(lab: Lab) -> Iterator[ApiServer]:
    """The same lab and state directory, with a 60 s observation window."""
    text = with_policy(lab.config.read_text(), observation_window="60s")
    config = lab.dir / "console-observe.yaml"
    config.write_text(text)
    srv = serve(config)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context (no sessionStorage, so no token) for each test."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    expect.set_options(timeout=WAIT_MS)
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


def away_from_home(client: httpx.Client) -> None:
    """A planned failover through the API unless the service already runs at dc2."""
    if fresh_status(client)["services"][0]["active_site"] == "dc2":
        return
    started = client.post("/api/v1/services/app/failover", headers=auth(), json={"planned": True})
    assert started.status_code == 202, started.text
    assert wait_run(client, started.json()["run_id"])["run"]["status"] == "succeeded"


def open_live(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator('[data-service="app"]')).to_be_visible()


def confirm_with_token(page: Any) -> None:
    """Confirm the open dialog, typing the token when the tab has none yet (the dialog
    hides the field, synchronously, when sessionStorage holds one)."""
    from playwright.sync_api import expect

    expect(page.locator("#confirm")).to_be_visible()
    if page.locator("#token-label").is_visible():
        page.fill("#token-input", TOKEN)
    expect(page.locator("#confirm-ok")).to_be_enabled()
    page.click("#confirm-ok")
    expect(page.locator("#confirm")).to_be_hidden()


def newest_run(url: str) -> int:
    with httpx.Client(base_url=url, timeout=60) as client:
        runs = client.get("/api/v1/runs", params={"limit": 1}).json()["runs"]
    return int(runs[0]["id"]) if runs else 0


def focused_run_id(page: Any, after: int) -> int:
    """The run the page shows once it shows one newer than ``after`` (the one just started)."""
    page.wait_for_function(
        "after => Number(document.querySelector('#current .run')?.dataset.runId) > after", arg=after
    )
    return int(page.locator("#current .run").get_attribute("data-run-id"))


# --------------------------------------------------------------------------- API


def test_plan_shows_the_steps_or_the_refusal_and_starts_nothing(
    lab: Lab, server: ApiServer
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        before = client.get("/api/v1/runs").json()["runs"]
        home = client.get("/api/v1/services/app/plan", params={"kind": "failback"})
        assert home.status_code == 409, home.text
        assert home.json()["error"] == "app already runs at its primary site dc1"
        plan = client.get("/api/v1/services/app/plan", params={"kind": "failover", "planned": True})
        assert plan.status_code == 200, plan.text
        doc = plan.json()["plan"]
        assert (doc["kind"], doc["from_site"], doc["to_site"]) == ("failover", "dc1", "dc2")
        assert any(s["point_of_no_return"] for s in doc["steps"])
        assert all(set(s["params"]) <= {"question", "window_s", "use"} for s in doc["steps"])
        assert client.get("/api/v1/runs").json()["runs"] == before
        bad = client.get("/api/v1/services/app/plan", params={"kind": "drop"})
        assert bad.status_code == 422 and "Traceback" not in bad.text
        assert client.get("/api/v1/services/nope/plan?kind=failover").status_code == 404


def test_history_records_what_the_server_observed(lab: Lab, server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        observed = fresh_status(client)["observed_at"]
        doc = client.get("/api/v1/services/app/history", params={"since": observed - 60}).json()
        assert doc["bucket_s"] == 10
        seen = {(s["component"], s["site"]) for s in doc["samples"]}
        assert {("db", "dc1"), ("db", "dc2"), ("router", "dc1")} <= seen, seen
        standby = [s for s in doc["samples"] if (s["component"], s["site"]) == ("db", "dc2")]
        assert standby[-1]["healthy"] and standby[-1]["lag_bytes"] is not None
        assert client.get("/api/v1/services/app/history?since=-1").status_code == 422
        assert client.get("/api/v1/services/nope/history").status_code == 404


# --------------------------------------------------------------------------- browser


def test_an_action_without_the_token_shows_the_apis_401(
    lab: Lab, server: ApiServer, page: Any
) -> None:
    from playwright.sync_api import expect

    open_live(page, server.url)
    page.click('[data-actions="app"] [data-action="auto-disable"]')
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Suspend automatic failback of app?")
    page.fill("#reason-input", "console test")
    page.click("#confirm-ok")  # the token field left empty
    error = page.locator("#confirm-error")
    expect(error).to_have_attribute("data-status", "401")
    expect(error).to_contain_text(
        "this endpoint changes things and needs Authorization: Bearer TOKEN"
    )
    shot(page, "01-no-token-401")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        auto = fresh_status(client)["services"][0]["auto_failback"]
        assert auto["enabled"] and auto.get("reason") != "console test", auto  # unchanged

        # with the token it is done, and the button offers the way back
        confirm_with_token(page)
        expect(page.locator('[data-actions="app"] [data-action="auto-enable"]')).to_be_visible()
        auto = fresh_status(client)["services"][0]["auto_failback"]
        assert not auto["enabled"] and auto["reason"] == "console test", auto
        assert auto["by"] == "dashboard"
        page.click('[data-actions="app"] [data-action="auto-enable"]')
        expect(page.locator("#token-label")).to_be_hidden()  # the tab kept the token
        confirm_with_token(page)
        expect(page.locator('[data-actions="app"] [data-action="auto-disable"]')).to_be_visible()
        assert fresh_status(client)["services"][0]["auto_failback"]["enabled"]


def test_failback_started_from_the_page_watched_to_the_end(
    lab: Lab, server: ApiServer, page: Any
) -> None:
    """Started with "stop for my approval", so that the run is caught live at its gate
    (a state, not a moment), then approved from the page and watched to the end."""
    from playwright.sync_api import expect

    with httpx.Client(base_url=server.url, timeout=60) as client:
        away_from_home(client)
    open_live(page, server.url)
    service = page.locator('[data-service="app"]')
    expect(service.locator('[data-degraded="true"]')).to_be_visible()

    # the confirmation shows the plan first; an option plans again; then the token
    page.click('[data-actions="app"] [data-action="failback"]')
    steps = page.locator("#plan-steps li[data-plan-step]")
    expect(steps.first).to_be_visible()
    expect(page.locator("#confirm-plan")).to_contain_text("failback dc2 → dc1")
    expect(page.locator("#plan-steps .badge.bad")).to_have_text(["point of no return"])
    expect(page.locator("#confirm-plan")).not_to_contain_text("null")
    expect(page.locator('#plan-steps [data-plan-step="approve"]')).to_have_count(0)
    page.check('#confirm-options input[name="approval"]')
    expect(page.locator('#plan-steps [data-plan-step="approve"]')).to_have_count(1)
    planned = steps.count()
    shot(page, "02-failback-plan")
    before = newest_run(server.url)
    confirm_with_token(page)

    # live: the run waits at its gate, drawn open; bars for every step of the plan
    run_id = focused_run_id(page, before)
    current = page.locator(f'#current [data-run-id="{run_id}"]')
    expect(current.locator('[data-run-status="waiting-approval"]')).to_be_visible()
    expect(page.locator('#timeline svg[data-source="timeline"] [data-bar]')).to_have_count(planned)
    expect(page.locator('#timeline [data-wait="approve"][data-wait-open="true"]')).to_contain_text(
        "waiting for approval"
    )
    expect(page.locator("#timeline line.now")).to_have_count(1)
    expect(page.locator(f'#abort-button[data-run-id="{run_id}"]')).to_be_visible()
    shot(page, "03-failback-waiting")

    # approved from the page: the confirmation lists what follows; the token is kept
    page.click(f'#approve-button[data-run-id="{run_id}"]')
    expect(page.locator("#confirm-title")).to_have_text(f"Approve run {run_id}?")
    expect(page.locator("#plan-steps")).to_contain_text("promote dc1")
    confirm_with_token(page)

    # to the end: succeeded, every bar done, the write window measured, the point of no
    # return passed, who approved, the service home
    expect(current.locator('[data-run-status="succeeded"]')).to_be_visible()
    bars = page.locator("#timeline [data-bar]")
    expect(bars).to_have_count(planned)
    expect(page.locator("#timeline line.now")).to_have_count(0)
    statuses = {bars.nth(i).get_attribute("data-bar-status") for i in range(bars.count())}
    assert statuses <= {"done", "skipped"}, statuses
    window = page.locator("#timeline .write-window")
    expect(window).to_have_count(1)
    expect(window).to_contain_text("writes unavailable")
    assert float(window.get_attribute("data-write-window")) > 0
    expect(page.locator('#timeline .pnr[data-pnr-passed="true"]')).to_have_count(1)
    expect(page.locator('#timeline [data-wait="approve"]')).to_contain_text("approved by dashboard")
    expect(service.locator('[data-degraded="false"]')).to_be_visible()
    expect(page.locator("#abort-button")).to_have_count(0)

    # the charts: the run marked on the history, its figures among the runs'
    expect(page.locator(f'[data-history="app"] [data-run-mark="{run_id}"]')).to_have_count(1)
    expect(page.locator('[data-history="app"] .history-row[data-component="db"]')).to_have_count(2)
    expect(page.locator(f'#runs-chart [data-run-bars="{run_id}"] rect.m-wu')).to_have_count(1)
    assert page.evaluate("sessionStorage.getItem('failback-api-token')") == TOKEN
    assert TOKEN not in page.url
    shot(page, "04-failback-succeeded")

    with httpx.Client(base_url=server.url, timeout=60) as client:
        doc = wait_run(client, run_id)
        assert doc["run"]["status"] == "succeeded" and doc["run"]["kind"] == "failback"
        events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
        assert any(e["kind"] == "gate.approved" and "dashboard" in e["message"] for e in events)


def test_abort_in_the_observation_window_from_the_page(
    lab: Lab, observing_server: ApiServer, page: Any
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=observing_server.url, timeout=60) as client:
        away_from_home(client)
    open_live(page, observing_server.url)
    page.click('[data-actions="app"] [data-action="failback"]')
    expect(page.locator('#plan-steps li[data-plan-step="observe"]')).to_contain_text("60s")
    before = newest_run(observing_server.url)
    confirm_with_token(page)
    run_id = focused_run_id(page, before)
    current = page.locator(f'#current [data-run-id="{run_id}"]')

    # inside the observation window: the gate is drawn open, Abort undoes the switch
    expect(current.locator('[data-run-status="observing"]')).to_be_visible()
    expect(page.locator('#timeline [data-bar="observe"]')).to_have_attribute(
        "data-bar-status", "applying"
    )
    shot(page, "05-observation-window")
    page.click(f'#abort-button[data-run-id="{run_id}"]')
    expect(page.locator("#confirm-title")).to_have_text(f"Abort run {run_id}?")
    expect(page.locator("#plan-steps li").first).to_be_visible()  # what would be undone
    expect(page.locator("#plan-steps")).to_contain_text("undo: promote dc1")
    shot(page, "06-abort-confirm")
    confirm_with_token(page)

    # undone: rolled back, the service away again where it was, the timeline says how
    expect(current.locator('[data-run-status="rolled-back"]')).to_be_visible()
    expect(page.locator("#run-error")).to_contain_text(
        "aborted by request during the observation window"
    )
    expect(page.locator('#timeline [data-bar="observe"]')).to_have_attribute(
        "data-bar-status", "reverted"
    )
    expect(page.locator('[data-service="app"] [data-degraded="true"]')).to_be_visible()
    dc2 = page.locator('[data-service="app"] [data-site="dc2"]')
    expect(dc2.locator('[data-component="db"] [data-role="primary"]')).to_be_visible()
    shot(page, "07-aborted-rolled-back")

    with httpx.Client(base_url=observing_server.url, timeout=60) as client:
        doc = wait_run(client, run_id)
        assert doc["run"]["status"] == "rolled-back", doc["run"]
        steps = {s["id"]: s["status"] for s in doc["report"]["steps"]}
        assert steps["observe"] == "reverted" and steps["back-promote-dc2"] == "done"
