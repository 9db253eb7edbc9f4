"""Looking never writes (issue 9, item 3), on the real lab.

``failback status``, ``failback plan``, the API's GET endpoints, its event stream and
``/metrics`` must leave the journal exactly as it was: an observation that wrote back
the active site it had read *before* observing could undo a concurrent run's "record
the active site" step, and the monitor would then fence the real primary.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from failback.api.server import ApiServer
from failback.api.settings import resolve_settings
from failback.config import load_topology
from tests.conftest import failback_argv
from tests.integration.labfixtures import Lab, lab_base, new_lab

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-ro-") as root:
        yield new_lab(root)


def journal_rows(lab: Lab) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the lab's journal, read through a read-only handle."""
    path = load_topology(lab.config).state_dir / "journal.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    finally:
        db.close()


def test_status_plan_and_api_reads_leave_the_journal_unchanged(lab: Lab) -> None:
    lab.status()  # creates the journal if needed (opening it is not a change of content)
    before = journal_rows(lab)
    assert lab.cli("status", "--json").returncode == 0
    assert lab.cli("plan", "failover", "app", "--planned", "--json").returncode == 0
    assert lab.cli("runs", "--json").returncode == 0
    settings = resolve_settings(load_topology(lab.config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for path in ("/api/v1/status", "/api/v1/runs", "/api/v1/events", "/metrics"):
                response = client.get(path)
                assert response.status_code == 200, (path, response.text)
            with client.stream("GET", "/api/v1/stream", timeout=30) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        break  # one frame is enough
    finally:
        server.stop()
    after = journal_rows(lab)
    changed = {t for t in before.keys() | after.keys() if before.get(t) != after.get(t)}
    assert not changed, f"reading changed the journal tables {sorted(changed)}"


def test_status_read_spanning_a_run_never_reverts_the_active_site(lab: Lab) -> None:
    """A ``failback status`` that read the active site (dc1) before a switchover recorded
    dc2, and finished observing after it, must not put dc1 back (the old code did, as
    soon as it had seen dc1's primary)."""
    observing = lab.dir / "status-observing"
    slow = lab.dir / "slow-once"
    doc = yaml.safe_load(lab.config.read_text())
    # one more component whose observation is slow once: it holds the status read open
    check = f"if [ -e {slow} ]; then rm -f {slow}; touch {observing}; sleep 8; fi; true"
    doc["services"]["app"]["components"]["probe"] = {
        "driver": "command",
        "sites": {"dc1": {"observe": check}, "dc2": {"observe": "true"}},
    }
    config = lab.dir / "failback-race.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    slow.touch()
    reader = subprocess.Popen(
        failback_argv("status", "-c", str(config), "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not observing.exists():  # the reader has read the state and observed dc1
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline, "the status read never reached the probe"
            time.sleep(0.05)
        switched = lab.cli("failover", "app", "--planned", "--yes", "--json", config=config)
        assert switched.returncode == 0, switched.stdout + switched.stderr
        assert switched.json()["status"] == "succeeded"
        assert reader.poll() is None, "the read ended before the run: no race exercised"
        _out, err = reader.communicate(timeout=60)
        assert reader.returncode == 0, err
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert lab.status(config).active_site == "dc2"
    # and the journal says so too (what the monitor and the next plan read)
    rows = journal_rows(lab)["service_state"]
    assert [r[1] for r in rows if r[0] == "app"] == ["dc2"]
    # the way back, so the lab ends as it began for other tests of this module
    back = lab.cli("failover", "app", "--planned", "--yes", "--json", config=config)
    assert back.returncode == 0, back.stdout + back.stderr
