"""Return after a security incident (issue 16, part 3), end to end through the real CLI.

One lab for the module (real PostgreSQL and HAProxy on 127.0.0.1, every site on the
local machine): dc1's baseline is recorded while it is clean, dc1 fails, the service
fails over to dc2, dc1 comes back as a stale primary, a file of dc1 is changed and the
service is marked ``after_incident``. Its failback must then stop at the clean_room gate
with the difference shown; an abort must leave everything as it was; an approval must
carry it through to a successful failback that clears the mark. Without a baseline the
failback is refused in one line with a hint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.lab import lab_status
from tests.integration.labfixtures import SERVICE, Lab, error_lines, lab_base, new_lab, step_of

pytestmark = pytest.mark.integration

TABLE = "t_incident"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-incident-") as root:
        yield new_lab(root)


def hba(lab: Lab, site: str) -> Path:
    return Path(lab.info.sites[site].pgdata) / "pg_hba.conf"


def baseline_file(lab: Lab, site: str) -> Path:
    return lab.dir / "state" / "baselines" / f"{site}.json"


def test_a_clean_site_matches_its_baseline(lab: Lab) -> None:
    recorded = lab.cli_json("baseline", "record", "dc1")
    assert recorded["hosts"] == ["local"] and recorded["files"] >= 2, recorded
    assert oct(os.stat(baseline_file(lab, "dc1")).st_mode & 0o777) == "0o600"
    diff = lab.cli("baseline", "diff", "dc1", "--json")
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert diff.json()["clean"] is True


def test_a_changed_file_stops_the_failback_and_abort_leaves_everything(lab: Lab) -> None:
    with lab.connect_dsn() as conn:
        conn.execute(f"CREATE TABLE {TABLE} (v text PRIMARY KEY)")
    lab.wait_values_on("dc2", TABLE, set())
    lab.unplanned_failover()
    lab.repair("dc1")  # back as a stale primary, fenced at the router
    with lab.connect("dc1") as conn:  # a commit only dc1 has: a resync would erase it
        conn.execute(f"INSERT INTO {TABLE} VALUES ('only-on-dc1')")
    before = lab.status()
    assert before.active_site == "dc2" and before.needs_resync == ["dc1"], before.summary()
    timeline = before.db("dc1")["data"]["timeline"]

    marked = lab.cli_json("incident", "mark", "--yes", SERVICE, "--reason", "sshd replaced on dc1")
    assert marked["after_incident"]["reason"] == "sshd replaced on dc1"
    assert lab.status().doc["after_incident"]["reason"] == "sshd replaced on dc1"

    # no baseline: refused in one line with a hint, no run started
    runs_before = len(lab.runs())
    aside = baseline_file(lab, "dc1").rename(baseline_file(lab, "dc1").with_suffix(".aside"))
    try:
        refused = lab.cli("failback", SERVICE, "--yes")
    finally:
        aside.rename(baseline_file(lab, "dc1"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    (line,) = error_lines(refused.stderr)
    assert "no usable baseline" in line, refused.stderr
    assert "hint: " in refused.stderr and "baseline record dc1" in refused.stderr
    assert len(lab.runs()) == runs_before

    with hba(lab, "dc1").open("a") as handle:
        handle.write("host all all 0.0.0.0/0 trust  # left by the intruder\n")
    waiting = lab.cli("failback", SERVICE, "--yes", "--json", timeout=300)
    doc = waiting.json()
    assert (waiting.returncode, doc["status"]) == (3, "waiting-approval"), doc
    assert f"local: file {hba(lab, 'dc1')} changed" in doc["error"], doc
    run_id = int(doc["run_id"])

    aborted = lab.cli("abort", str(run_id), "--yes", "--json")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert aborted.json()["status"] == "aborted"
    after = lab.status()
    assert after.active_site == "dc2" and after.needs_resync == ["dc1"], after.summary()
    assert after.current_run is None, after.summary()
    dc1 = after.db("dc1")
    assert dc1["role"] == "stale-primary" and dc1["data"]["timeline"] == timeline, dc1
    assert lab.values_on("dc1", TABLE) == {"only-on-dc1"}  # nothing captured, nothing resynced
    assert lab_status(lab.dir)["router"]["write_target"] == "dc2"
    assert after.doc["after_incident"] is not None  # the mark stays for the next failback
    steps = {s["id"]: s["status"] for s in lab.run_show(run_id)["run"]["steps"]}
    assert steps["clean_room"] in ("waiting", "failed"), steps  # never passed
    assert steps["capture-dc1"] == steps["resync-dc1"] == "pending", steps


def test_approval_continues_to_a_successful_failback_that_clears_the_mark(lab: Lab) -> None:
    waiting = lab.cli("failback", SERVICE, "--yes", "--json", timeout=300)
    doc = waiting.json()
    assert doc["status"] == "waiting-approval" and "pg_hba.conf changed" in doc["error"], doc
    run_id = int(doc["run_id"])
    approved = lab.cli("approve", "--yes", str(run_id), "--json", timeout=300)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approved.json()["status"] == "succeeded", approved.json()
    report = approved.json()["report"]
    gate = step_of(report, "clean_room")
    assert gate["status"] == "done", gate
    status = lab.wait_home_end_state()
    assert status.doc["after_incident"] is None, status.summary()
    assert step_of(report, "incident_clear")["status"] == "done"
