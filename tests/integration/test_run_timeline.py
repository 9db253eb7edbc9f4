"""The run timeline (issue 17, item 3): what a run did over time, from its real journal.

Runs are real: the ``command`` driver runs real shell commands through the real CLI
(failover, a failback that waits at its approval gate, a failing fence that rolls
back), and the journal they leave is the real SQLite one. The API is the real app served
by uvicorn on 127.0.0.1. Nothing is mocked; no assertion is about how long anything took
beyond the order of what happened.

Needs no database server (no ``integration`` marker): only the CLI and shell commands.
"""

from __future__ import annotations

import getpass
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from failback.report.timeline import Timeline, timeline_for
from failback.store import open_journal
from tests.conftest import run_cli

HOSTILE = "<b>x</b>&<script>alert(1)</script>"
"""Printed by a fence: step outputs are whatever a command prints."""


def write_topology(tmp: Path, *, fence: str | None = None) -> Path:
    (tmp / "dc1.up").touch()
    (tmp / "dc2.up").touch()
    fence = fence or f"sleep 0.2; echo '{HOSTILE}'"
    text = textwrap.dedent(f"""\
        sites:
          dc1: {{}}
          dc2: {{}}
        services:
          app:
            primary_site: dc1
            components:
              vip:
                driver: command
                sites:
                  dc1:
                    observe: "test -f {tmp}/dc1.up"
                    fence: "{fence}"
                    promote: "true"
                    unfence: "true"
                  dc2:
                    observe: "test -f {tmp}/dc2.up"
                    promote: "sleep 0.1; echo promoted"
                    unfence: "true"
            policy:
              approval: required
              stability_window: 200ms
        """)
    path = tmp / "failback.yaml"
    path.write_text(text)
    return path


@dataclass
class Runs:
    """A failover and a failback (approved by a named person) of one command topology."""

    config: Path
    failover: int
    failback: int


def cli_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.json()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    tmp = tmp_path_factory.mktemp("timeline")
    config = write_topology(tmp)
    over = cli_json("failover", "app", "--planned", "-c", str(config), "--yes")
    assert over["status"] == "succeeded", over
    back = cli_json("failback", "app", "-c", str(config), "--yes")
    assert back["status"] == "waiting-approval", back
    approved = run_cli("approve", str(back["run_id"]), "--yes", "-c", str(config), "--json")
    assert approved.returncode == 0, approved.stderr
    assert approved.json()["status"] == "succeeded", approved.stdout
    return Runs(config, over["run_id"], back["run_id"])


def timeline(config: Path, run_id: int) -> Timeline:
    journal = open_journal(config.parent / ".failback")
    try:
        return timeline_for(journal, run_id)
    finally:
        journal.close()


def test_every_step_is_a_bar_in_plan_order_within_the_run(runs: Runs) -> None:
    tl = timeline(runs.config, runs.failover)
    shown = run_cli("run", "show", str(runs.failover), "-c", str(runs.config), "--json")
    report = shown.json()["run"]
    assert [s.id for s in tl.steps] == [s["id"] for s in report["steps"]]
    assert not tl.live and tl.status == "succeeded"
    assert tl.started_by == getpass.getuser()  # the CLI records who started the run
    for bar in tl.steps:
        assert bar.start_s is not None and bar.end_s is not None, bar
        assert 0 <= bar.start_s <= bar.end_s <= tl.end_s, bar
    starts = [b.start_s or 0.0 for b in tl.steps]
    assert starts == sorted(starts)


def test_the_approval_wait_names_who_approved_and_ends_at_the_approval(runs: Runs) -> None:
    tl = timeline(runs.config, runs.failback)
    (wait,) = [w for w in tl.waits if w.kind == "approval"]
    (approval,) = tl.approvals
    assert approval.step == wait.step and approval.by == wait.by
    assert approval.by  # the OS user who ran `failback approve`
    assert wait.end_s == approval.at_s and wait.start_s <= approval.at_s
    gate = next(s for s in tl.steps if s.id == wait.step)
    assert gate.kind == "gate" and gate.end_s is not None and gate.end_s >= approval.at_s
    # the stability window is a wait too
    assert "stability" in {w.kind for w in tl.waits}


def test_the_point_of_no_return_is_the_promotion_and_was_passed(runs: Runs) -> None:
    tl = timeline(runs.config, runs.failover)
    ponr = tl.point_of_no_return
    assert ponr is not None and ponr.passed
    step = next(s for s in tl.steps if s.id == ponr.step)
    assert step.point_of_no_return and step.action.endswith("run")
    assert ponr.at_s == step.start_s


def test_a_rollback_shows_the_failed_step_and_each_undo(tmp_path: Path) -> None:
    config = write_topology(tmp_path, fence="exit 3")
    run = cli_json("failover", "app", "--planned", "-c", str(config), "--yes")
    assert run["status"] == "rolled-back", run
    tl = timeline(config, run["run_id"])
    assert tl.status == "rolled-back" and tl.rollback is not None
    failed = [s for s in tl.steps if s.status == "failed"]
    assert len(failed) == 1 and failed[0].error and failed[0].end_s is not None
    assert tl.point_of_no_return is not None and not tl.point_of_no_return.passed
    assert "step.failed" in [e.kind for e in tl.events]
    for undo in tl.undos:
        assert undo.start_s <= undo.end_s


def test_the_timeline_holds_no_step_output(runs: Runs) -> None:
    """Served without a token: what the fence printed must not be in it."""
    text = timeline(runs.config, runs.failover).model_dump_json()
    assert "<script>" not in text and "alert(1)" not in text


# --------------------------------------------------------------------------- API


@pytest.fixture(scope="module")
def api(runs: Runs) -> Iterator[httpx.Client]:
    settings = resolve_settings(load_topology(runs.config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
    finally:
        server.stop()


def test_the_api_serves_the_timeline_without_a_token(api: httpx.Client, runs: Runs) -> None:
    response = api.get(f"/api/v1/runs/{runs.failback}/timeline")
    assert response.status_code == 200, response.text
    served = Timeline.model_validate(response.json())
    local = timeline(runs.config, runs.failback)
    assert served.model_dump(exclude={"end_s"}) == local.model_dump(exclude={"end_s"})


def test_the_api_timeline_of_an_unknown_run_is_a_404(api: httpx.Client) -> None:
    response = api.get("/api/v1/runs/999/timeline")
    assert response.status_code == 404
    assert response.json()["hint"]


def test_the_timeline_is_in_the_openapi_document(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    operation = doc["paths"]["/api/v1/runs/{run_id}/timeline"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/Timeline")
    fields = doc["components"]["schemas"]["Timeline"]["properties"]
    for name in ("steps", "waits", "write_unavailability", "point_of_no_return", "t0"):
        assert name in fields
