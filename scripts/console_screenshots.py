"""Screenshots of the console for the docs (docs/img/console-*.png), from a real lab.

Brings a lab up in a temporary directory (real PostgreSQL, HAProxy, PgBouncer), serves
the API on a free port with a 20 s observation window, and drives the page in
Debian's headless chromium through Playwright, as a person would: a planned failover,
then a failback started from the page (the confirmation with its plan), watched live
inside its observation window and to the end. Takes the lab down on exit.

    .venv/bin/python scripts/console_screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from failback.lab import lab_down, lab_up

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository: tests/
from tests.integration.browser import CHROMIUM, CHROMIUM_ARGS

TOKEN = "console-screenshots-token"
WAIT_MS = 180_000


def shoot(out: Path, url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url + "/")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator('[data-service="app"] [data-degraded="true"]')).to_be_visible()

        page.click('[data-actions="app"] [data-action="failback"]')
        expect(page.locator("#plan-steps li").first).to_be_visible()
        page.fill("#token-input", TOKEN)
        page.locator("#confirm").screenshot(path=str(out / "console-plan.png"))
        page.click("#confirm-ok")
        expect(page.locator("#confirm")).to_be_hidden()

        expect(page.locator('#current [data-run-status="observing"]')).to_be_visible()
        expect(page.locator('#timeline svg[data-source="timeline"]')).to_be_visible()
        page.screenshot(path=str(out / "console-live.png"))

        expect(page.locator('#current [data-run-status="succeeded"]')).to_be_visible()
        expect(page.locator('[data-history="app"] .run-mark')).to_have_count(2)
        page.locator("#current").screenshot(path=str(out / "console-timeline.png"))
        page.locator("#charts").screenshot(path=str(out / "console-history.png"))
        page.locator('section[aria-label="runs measured"]').screenshot(
            path=str(out / "console-runs.png")
        )
        browser.close()


def failover(url: str) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        started = client.post(
            "/api/v1/services/app/failover",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"planned": True},
        )
        started.raise_for_status()
        run_id = started.json()["run_id"]
        while True:
            doc: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
            if doc["run"]["status"] in ("succeeded", "rolled-back", "aborted", "failed"):
                assert doc["run"]["status"] == "succeeded", doc["run"]
                return
            client.get("/api/v1/status")  # what the server observes goes to the history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="fb-console-shots-", dir="/tmp"))
    os.chmod(root, 0o755)  # PostgreSQL runs as its own user and must traverse it
    server = None
    try:
        lab = lab_up(root / "lab")
        config = Path(lab.config)
        text = config.read_text().replace("observation_window: 3s", "observation_window: 20s")
        observed = config.with_name("console-shots.yaml")
        observed.write_text(text)
        settings = resolve_settings(
            load_topology(observed), listen="127.0.0.1:0", environ={"FAILBACK_API_TOKEN": TOKEN}
        )
        server = ApiServer(settings, log_level="warning").start()
        failover(server.url)
        shoot(args.out, server.url)
        print(f"screenshots in {args.out}")
    finally:
        if server is not None:
            server.stop()
        if (root / "lab" / "lab.json").exists():
            lab_down(root / "lab", purge=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
