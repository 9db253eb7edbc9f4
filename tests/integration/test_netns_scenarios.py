"""Failover and failback across machines: the netns lab, each site its own host.

Each site (and the edge, where HAProxy and PgBouncer run) is a network namespace with
its own address and sshd; failback reaches every site's processes and files over SSH
only. The scenarios of the single-host lab, through the real CLI: a planned round trip
under a steady writer (nothing lost, no client error), a whole machine that dies and
comes back believing it is primary, a site cut off the network while it keeps running.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from failback.lab import lab_break, lab_repair, lab_status
from failback.lab import sshd as lab_sshd
from failback.lab.core import lab_heal, lab_partition
from failback.lab.netns import identify, netns_available, plan_from_dict
from failback.lab.probe import TABLE, WriteProbe
from tests.conftest import run_cli
from tests.integration.labfixtures import SERVICE, Lab, lab_base, measurement, new_lab
from tests.integration.pgholds import wait_until
from tests.integration.test_traffic import start_failback, wait_observing, with_observation

AVAILABLE, WHY_NOT = netns_available()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not AVAILABLE, reason=f"netns lab unavailable: {WHY_NOT}"),
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-ns-") as root:
        yield new_lab(root, hosts="netns")


def events_of(lab: Lab, run_id: int) -> list[dict[str, Any]]:
    doc = lab.cli_json("run", "show", str(run_id))
    return list(doc.get("events", []))


def write_lands_on(lab: Lab) -> str:
    """The site whose PostgreSQL took a write made through the clients' endpoint."""
    with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ns_marks (v text)")
        conn.execute("INSERT INTO ns_marks VALUES ('x')")
        row = conn.execute("SELECT inet_server_addr()::text").fetchone()
    assert row is not None
    address = str(row[0]).split("/")[0]
    return next(s for s in lab.info.sites if lab.address(s) == address)


def test_every_site_is_a_machine_of_its_own(lab: Lab) -> None:
    info = lab.info
    doc = info.to_dict()
    assert {"config", "service", "dsn", "sites", "web"} <= set(doc)
    edge = info.network["hosts"]["edge"]["address"] if info.network else None
    assert f"host={edge} " in info.dsn and info.web.url.startswith(f"http://{edge}:")
    for site in info.sites:
        assert doc["sites"][site]["netns"] and doc["sites"][site]["address"] != "127.0.0.1"
        pid = lab_status(lab.dir)["sites"][site]["pid"]
        assert identify(pid) == info.sites[site].netns, f"{site}'s postmaster runs elsewhere"
    status = lab_status(lab.dir)
    assert identify(status["router"]["pid"]) == info.network["hosts"]["edge"]["netns"]
    assert identify(status["pool"]["pid"]) == info.network["hosts"]["edge"]["netns"]
    topology = yaml.safe_load(lab.config.read_text())
    assert {h["via"] for h in topology["hosts"].values()} == {"ssh"}
    assert topology["sites"]["dc1"]["runs_on"] == "dc1"
    components = topology["services"]["app"]["components"]
    assert components["router"]["runs_on"] == components["pool"]["runs_on"] == "edge"
    # failback reaches HAProxy's runtime API over the network, not a local socket file
    assert components["router"]["options"]["socket"] == f"{edge}:{info.router.admin_port}"


def test_hosts_check_reaches_every_machine(lab: Lab) -> None:
    doc = lab.cli_json("hosts", "check")
    by_name = {h["name"]: h for h in doc["hosts"]}
    for name in ("dc1", "dc2", "edge"):
        assert by_name[name]["reachable"] is True, by_name[name]
        assert by_name[name]["identity"]["user"] == "root"
    assert lab.cli("hosts", "check").returncode == 0


def test_planned_round_trip_over_ssh_loses_nothing(lab: Lab) -> None:
    probe = WriteProbe(lab.info.dsn, interval=0.01)
    probe.prepare()
    probe.start()
    try:
        time.sleep(0.5)
        lab.failover("--planned")
        assert write_lands_on(lab) == "dc2"
        time.sleep(0.5)
        back = lab.failback()
        time.sleep(0.5)
    finally:
        stats = probe.stop()
    assert stats.failures == [], stats.failures[:3]
    acked = {i for i, _ in stats.acknowledged}
    assert len(acked) > 50
    with lab.connect("dc1") as conn:
        rows = conn.execute(f"SELECT id FROM {TABLE}").fetchall()
    assert acked <= {int(r[0]) for r in rows}, "an acknowledged write is missing on dc1"
    assert write_lands_on(lab) == "dc1"
    lab.wait_home_end_state()
    gap = measurement(back["report"], "write_unavailability_s")
    assert gap["value"] is not None and gap["value"] > 0, gap


def test_a_dead_machine_returns_as_a_fenced_stale_primary(lab: Lab) -> None:
    lab.record_primary_position()
    lab_break(lab.dir, "dc1", "host")
    doc = lab.failover()
    events = events_of(lab, int(doc["run_id"]))
    assert any(e["kind"] == "fence.unreachable" for e in events), events
    assert write_lands_on(lab) == "dc2"

    lab_repair(lab.dir, "dc1", "host")  # it starts believing it is the primary
    status = lab.status()
    assert status.db("dc1")["role"] == "stale-primary", status.summary()
    assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"
    assert write_lands_on(lab) == "dc2", "a client write reached the stale primary"

    lab.failback()
    lab.wait_home_end_state()


def test_a_returning_primary_rewind_cannot_repair_is_recloned_over_ssh(lab: Lab) -> None:
    """dc1 died as the primary and comes back diverged; pg_rewind fails on it (a file it
    must overwrite is not writable by PostgreSQL's OS user), so the failback re-clones
    dc1 with pg_basebackup run on dc1's machine from dc2, keeps the old data directory
    aside, and switches home without losing a write."""
    lab_break(lab.dir, "dc1", "host")
    lab.failover()
    with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ns_reclone (v int)")
        conn.execute("INSERT INTO ns_reclone VALUES (42)")  # taken by dc2 only
    lab_repair(lab.dir, "dc1", "host")  # a stale primary, diverged (its crash recovery)
    pgdata = Path(lab.info.sites["dc1"].pgdata)
    hba = pgdata / "pg_hba.conf"
    os.chown(hba, 0, 0)  # the namespaces share the filesystem
    os.chmod(hba, 0o444)
    back = lab.failback()
    resync = next(s for s in back["report"]["steps"] if s["id"] == "resync-dc1")
    output = resync["output"]
    assert output["method"] == "reclone", resync
    assert "rewind failed" in output["reason"], output["reason"]
    moved = Path(output["details"]["moved_to"])
    assert (
        moved.name.startswith(pgdata.name + ".failback-old-") and (moved / "PG_VERSION").is_file()
    )
    shutil.rmtree(moved)
    assert write_lands_on(lab) == "dc1"
    with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SELECT v FROM ns_reclone").fetchall() == [(42,)]
    lab.wait_home_end_state()


def test_a_partitioned_site_keeps_running_and_is_fenced_when_it_heals(lab: Lab) -> None:
    lab.record_primary_position()
    before = lab_status(lab.dir)["sites"]["dc1"]["pid"]
    lab_partition(lab.dir, "dc1")
    try:
        doc = lab.failover()
        assert doc["status"] == "succeeded"
        assert write_lands_on(lab) == "dc2"
        assert lab_status(lab.dir)["sites"]["dc1"]["pid"] == before, "dc1 stopped running"
    finally:
        lab_heal(lab.dir, "dc1")
    status = lab.status()
    assert status.db("dc1")["role"] == "stale-primary", status.summary()
    assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"
    assert write_lands_on(lab) == "dc2"
    lab.failback()
    lab.wait_home_end_state()


def test_undo_until_commit_across_machines_loses_nothing(lab: Lab) -> None:
    """An abort in the observation window switches back over SSH: the re-protected dc2
    is promoted again, dc1 becomes its standby, no write lost, no client error."""
    config = with_observation(lab, "60s")
    lab.cli_json("failover", "app", "--planned", "--yes", config=config)
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        proc = start_failback(lab, config)
        run_id = wait_observing(lab, config, proc)
        assert write_lands_on(lab) == "dc1"
        aborted = lab.cli_json("abort", str(run_id), "--yes", config=config)
        proc.communicate(timeout=120)
        mark = time.time()
        wait_until(lambda: probe.stats.acked_ids(since=mark))
    finally:
        stats = probe.stop()
    assert aborted["status"] == "rolled-back", aborted
    assert probe.missing(stats.acked_ids()) == []
    assert stats.failures == [], stats.failures[:3]
    assert write_lands_on(lab) == "dc2"
    status = lab.status()
    assert status.db("dc1")["role"] == "standby" and status.db("dc1")["data"]["streaming"]
    lab.failback()
    lab.wait_home_end_state()


def test_a_server_that_answers_is_never_taken_for_a_dead_machine(lab: Lab) -> None:
    """dc1's sshd is down but its PostgreSQL serves: a forced (unplanned) failover must
    not take dc1 for gone — a client that bypasses the routers could still write there.
    The database fence fails, the run rolls back, dc1 stays the primary, routed."""
    assert lab.info.network is not None
    plan = plan_from_dict(lab.info.network)
    lab_sshd.stop(lab.dir, plan, "dc1")
    try:
        result = lab.cli("failover", SERVICE, "--force", "--yes", "--json")
    finally:
        lab_sshd.start(lab.dir, plan, "dc1")
    doc = result.json()
    assert result.returncode == 1 and doc["status"] == "rolled-back", doc
    assert "still answers" in doc["error"], doc["error"]
    assert write_lands_on(lab) == "dc1"
    lab.wait_home_end_state()


def test_a_drill_over_ssh_copies_the_standby_on_its_machine_and_leaves_nothing(
    lab: Lab,
) -> None:
    """``failback drill`` through the standby's machine (SSH only): pg_basebackup, start,
    promote and the verified write run there, under a steady writer that sees nothing;
    afterwards no copy, socket directory or process is left on that machine."""
    standby = next(s for s in lab.info.sites if s != lab.status().active_site)
    probe = WriteProbe(lab.info.dsn).start()
    try:
        began = time.time()
        result = run_cli("drill", SERVICE, "--yes", "--json", "-c", str(lab.config), timeout=300)
        ended = time.time()
    finally:
        stats = probe.stop()
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    doc = result.json()
    report = doc["report"]
    assert doc["status"] == "succeeded" and report["to_site"] == standby, doc
    assert stats.failures_between(began, ended) == 0, stats.failures[-3:]
    assert stats.longest_gap(began, ended) < 0.5
    assert measurement(report, "drill_rto_s")["value"] > 0
    copy = Path(f"{lab.info.sites[standby].pgdata}.failback-drill-{report['run_id']}")
    assert not copy.exists()
    assert not list(Path("/tmp").glob(f"failback-drill-{report['run_id']}-*"))
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        assert str(copy).encode() not in cmdline, f"process {entry} of the copy is left"


def test_lab_down_leaves_no_namespace_interface_or_process(lab: Lab) -> None:
    network = lab.info.network
    assert network is not None
    result = run_cli("lab", "down", "--dir", str(lab.dir), "--json")
    assert result.returncode == 0, result.stderr
    assert "network" in json.loads(result.stdout)["stopped"]
    from failback.lab.netns import leftovers

    assert leftovers(plan_from_dict(network)) == []
    lab_up_again = run_cli("lab", "up", "--dir", str(lab.dir), "--json")  # restarts it
    assert lab_up_again.returncode == 0, lab_up_again.stderr
    assert lab_status(lab.dir)["up"] is True
