"""Plan, then apply: ``failback plan ... --out FILE`` and ``failback KIND SERVICE --plan FILE``.

Real PostgreSQL 15 and HAProxy processes (``failback.lab``), driven through the real
CLI in a subprocess. A saved plan runs exactly as written, or not at all: every
refusal below is one line and a hint, a non-zero exit, and no new run in
``failback runs``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from failback.lab import lab_break
from tests.integration.labfixtures import SERVICE, Lab, error_lines, lab_base, new_lab

pytestmark = pytest.mark.integration


@pytest.fixture
def lab() -> Iterator[Lab]:
    with lab_base(prefix="fb-plan-") as root:
        yield new_lab(root)


def plan_out(lab: Lab, kind: str, path: Path, *options: str) -> dict[str, Any]:
    """``failback plan KIND app --out PATH --json``; returns the file's document."""
    doc = lab.cli_json("plan", kind, SERVICE, *options, "--out", str(path))
    assert doc["plan_file"] == str(path), doc
    saved = json.loads(path.read_text())
    assert saved["plan"] == doc["plan"], "the file holds the plan that was printed"
    return dict(saved)


def apply(lab: Lab, kind: str, path: Path, *extra: str) -> Any:
    """``failback KIND app --plan PATH --yes [extra]`` (the CLI result, not asserted)."""
    return lab.cli(kind, SERVICE, "--plan", str(path), *extra, "--yes", timeout=300)


def assert_refused(lab: Lab, result: Any, runs_before: list[dict[str, Any]], *words: str) -> str:
    """One error line naming ``words``, a hint, a non-zero exit, and no new run."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = error_lines(result.stderr)
    for word in words:
        assert word in line, line
    assert "hint:" in result.stderr, result.stderr
    assert lab.runs() == runs_before, "a refused --plan must not create a run"
    return line


def applied_run(lab: Lab, result: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """The run a successful ``--plan`` started; its journaled plan is the file's plan."""
    assert result.returncode == 0, result.stdout + result.stderr
    doc = result.json()
    assert doc["status"] == "succeeded", doc
    shown = lab.run_show(int(doc["run_id"]))
    assert shown["plan"] == saved["plan"], "the run's journaled plan is the saved plan"
    assert [s["id"] for s in shown["run"]["steps"]] == [s["id"] for s in saved["plan"]["steps"]]
    return dict(doc)


def test_failback_runs_exactly_the_saved_plan(lab: Lab) -> None:
    """dc1 crashes, fails over, comes back as a stale primary; the failback is planned
    to a file (twice: an unchanged lab observed twice has the same fingerprint, or apply
    could never work), then applied."""
    lab.unplanned_failover()
    lab.repair("dc1")
    path = lab.dir / "failback.plan.json"
    first = plan_out(lab, "failback", path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = plan_out(lab, "failback", path)
    assert second["observed_fingerprint"] == first["observed_fingerprint"], (
        first["observed"],
        second["observed"],
    )
    assert second["plan"] == first["plan"]
    db_dc1 = next(
        c for c in second["observed"]["components"] if (c["component"], c["site"]) == ("db", "dc1")
    )
    assert db_dc1["role"] == "stale-primary" and db_dc1["system_identifier"], db_dc1

    doc = applied_run(lab, lab.cli(
        "failback", SERVICE, "--plan", str(path), "--yes", "--json", timeout=300
    ), second)  # fmt: skip
    assert doc["report"]["kind"] == "failback"
    lab.wait_home_end_state()

    # the same file again: the world it was made from is gone
    runs_before = lab.runs()
    line = assert_refused(
        lab, apply(lab, "failback", path), runs_before, "changed since the plan was made"
    )
    assert "active site was dc2, is now dc1" in line
    assert "db at dc1 was stale-primary, is now primary" in line


def test_planned_failover_from_a_file_and_every_refusal(lab: Lab) -> None:
    path = lab.dir / "failover.plan.json"
    saved = plan_out(lab, "failover", path, "--planned")
    assert saved["options"]["planned"] is True
    assert saved["kind"] == "failover" and saved["service"] == SERVICE
    assert (
        plan_out(lab, "failover", path, "--planned")["observed_fingerprint"]
        == (saved["observed_fingerprint"])
    )
    runs_before = lab.runs()
    assert runs_before == []

    # options that would change the plan
    assert_refused(
        lab, apply(lab, "failover", path, "--planned"), runs_before, "--planned", "--plan"
    )
    # wrong kind, wrong service
    assert_refused(lab, apply(lab, "failback", path), runs_before, "not a failback plan")
    result = lab.cli("failover", "web", "--plan", str(path), "--yes")
    assert_refused(lab, result, runs_before, "plan for service app, not web")

    # a tampered copy: one step removed
    tampered = lab.dir / "tampered.plan.json"
    document = json.loads(path.read_text())
    document["plan"]["steps"] = [s for s in document["plan"]["steps"] if s["id"] != "stop-dc1"]
    assert len(document["plan"]["steps"]) == len(saved["plan"]["steps"]) - 1
    tampered.write_text(json.dumps(document))
    assert_refused(lab, apply(lab, "failover", tampered), runs_before, "digest does not match")

    # a truncated copy
    truncated = lab.dir / "truncated.plan.json"
    truncated.write_text(path.read_text()[:200])
    assert_refused(lab, apply(lab, "failover", truncated), runs_before, "truncated")

    # the topology file edited (even a comment: what was reviewed is no longer what runs)
    original = lab.config.read_text()
    lab.config.write_text(original + "# edited after the plan was made\n")
    try:
        assert_refused(
            lab, apply(lab, "failover", path), runs_before, "the topology changed since the plan"
        )
    finally:
        lab.config.write_text(original)

    # --out never overwrites a file that is not a plan file (the topology, say)
    result = lab.cli("plan", "failover", SERVICE, "--planned", "--out", str(lab.config))
    assert_refused(lab, result, runs_before, "not a failback plan file")
    assert lab.config.read_text() == original

    # nothing above changed the lab
    status = lab.status()
    assert status.active_site == "dc1" and status.db("dc1")["role"] == "primary"

    result = lab.cli("failover", SERVICE, "--plan", str(path), "--yes", "--json", timeout=300)
    doc = applied_run(lab, result, saved)
    shown = lab.run_show(int(doc["run_id"]))
    assert shown["run"]["from_site"] == "dc1" and shown["run"]["to_site"] == "dc2"
    status = lab.status()
    assert status.active_site == "dc2", status.summary()
    assert status.db("dc2")["role"] == "primary", status.summary()
    assert status.db("dc1")["role"] == "standby", status.summary()

    # the failback is planned; then dc1, where it would return, stops
    back = lab.dir / "failback.plan.json"
    plan_out(lab, "failback", back)
    runs_before = lab.runs()
    lab_break(lab.dir, "dc1", "db")
    line = assert_refused(
        lab, apply(lab, "failback", back), runs_before, "changed since the plan was made"
    )
    assert "db at dc1 was standby, is now down (unhealthy)" in line
    # and the failover file is stale as well: the service is no longer at dc1
    line = assert_refused(lab, apply(lab, "failover", path), runs_before, "active site")
    assert "active site was dc1, is now dc2" in line
