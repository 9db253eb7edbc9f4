"""Failover and failback of a PostgreSQL pair behind HAProxy, end to end (GitHub issue 3).

Real PostgreSQL 15 and HAProxy processes started by ``failback.lab.lab_up`` in a fresh
directory under /tmp; failover and failback are run through the real CLI in a
subprocess, the way a user runs them. Clients are real psycopg connections through the
router's write endpoint (``LabInfo.dsn``) or straight to one site's port.

No assertion is about time: durations are measured by bench/failback_downtime.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from failback.drivers.postgres.process import controldata, stop
from failback.hosts import LocalHost
from failback.lab import lab_break, lab_status
from failback.lab.pg import lab_node
from failback.lab.probe import WriteProbe
from tests.integration.labfixtures import (
    SERVICE,
    Lab,
    error_lines,
    lab_base,
    measurement,
    new_lab,
    step_of,
)

pytestmark = pytest.mark.integration

TABLE = "t_issue3"


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab per test (dc1 primary, dc2 streaming standby, HAProxy -> dc1),
    taken down and purged afterwards even when the test fails."""
    with lab_base() as root:
        yield new_lab(root)


def wait_for_writes(probe: WriteProbe, *, since: float, count: int = 10) -> None:
    """Until the client had ``count`` writes acknowledged after ``since`` (a state)."""
    deadline = time.monotonic() + 60
    while len(probe.stats.acked_ids(since=since)) < count:
        assert time.monotonic() < deadline, f"the client made no progress since {since}"
        time.sleep(0.01)


def make_table(lab: Lab) -> None:
    """A table written through the router, present on both sites before anything fails."""
    with lab.connect_dsn() as conn:
        conn.execute(f"CREATE TABLE {TABLE} (v text PRIMARY KEY)")
        conn.execute(f"INSERT INTO {TABLE} VALUES ('before')")
    lab.wait_values_on("dc2", TABLE, {"before"})


# --------------------------------------------------------------------------- 1


def test_unplanned_failover_moves_writes_to_dc2_and_reports(lab: Lab) -> None:
    make_table(lab)
    report = lab.unplanned_failover()["report"]
    assert report["kind"] == "failover" and report["status"] == "succeeded"
    assert (report["from_site"], report["to_site"]) == ("dc1", "dc2")

    # what was measured: RTO and what may have been lost (async replication)
    rto = measurement(report, "rto_s")
    assert rto["value"] is not None and rto["value"] > 0
    loss = measurement(report, "possible_loss_bytes")
    assert loss["value"] is not None and loss["value"] >= 0, loss  # dc1 was observed first
    assert "last seen at" in (loss["note"] or "")

    # a client's write through the lab's dsn lands on dc2
    port = lab.write_via_router(TABLE, "after-failover")
    assert port == lab.port("dc2")
    assert "after-failover" in lab.values_on("dc2", TABLE)

    status = lab.status()
    assert status.active_site == "dc2", status.summary()
    assert status.needs_resync == ["dc1"], status.summary()
    assert status.current_run is None, status.summary()
    assert status.db("dc2")["role"] == "primary"
    assert status.db("dc1")["role"] == "down"
    assert lab_status(lab.dir)["router"]["write_target"] == "dc2"


def test_unplanned_failover_of_a_healthy_primary_is_refused(lab: Lab) -> None:
    make_table(lab)
    before = lab_status(lab.dir)
    result = lab.cli("failover", SERVICE, "--yes")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = error_lines(result.stderr)
    assert "healthy" in line
    assert "--planned" in result.stderr
    # nothing changed: no run, dc1 still the primary taking the writes
    assert lab.runs() == []
    after = lab_status(lab.dir)
    assert after["sites"]["dc1"]["role"] == "primary"
    assert after["sites"]["dc2"]["role"] == "standby"
    assert after["sites"]["dc1"]["pid"] == before["sites"]["dc1"]["pid"]
    assert after["sites"]["dc2"]["timeline"] == before["sites"]["dc2"]["timeline"] == 1
    assert after["router"]["write_target"] == "dc1"
    assert lab.write_via_router(TABLE, "still-dc1") == lab.port("dc1")
    status = lab.status()
    assert status.active_site == "dc1" and status.current_run is None


# --------------------------------------------------------------------------- 2


def test_failback_loses_no_acknowledged_write_under_a_concurrent_writer(lab: Lab) -> None:
    make_table(lab)
    lab.unplanned_failover()
    lab.repair("dc1")

    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        wait_for_writes(probe, since=0)  # the client is writing before the failback starts
        started = time.time()
        report = lab.failback()["report"]
        finished = time.time()
        wait_for_writes(probe, since=finished)  # ... and keeps writing after it
    finally:
        stats = probe.stop()
    assert report["kind"] == "failback" and report["status"] == "succeeded"

    acked = stats.acked_ids()
    assert stats.acked_ids(until=started) and stats.acked_ids(since=finished)
    assert probe.missing(acked) == [], "acknowledged writes lost by the failback"
    # every acknowledged write is on dc1 itself, and replicated to the re-protected dc2
    with lab.connect("dc1") as conn:
        rows = conn.execute("SELECT id FROM failback_probe WHERE id = ANY(%s)", (acked,))
        assert {int(r[0]) for r in rows.fetchall()} == set(acked)

    unavailability = measurement(report, "write_unavailability_s")
    assert unavailability["value"] is not None and unavailability["value"] > 0
    assert unavailability["step"] in ("route-router-dc1", "route-pool-dc1")
    # promise 4: what the client lived through, within a stated tolerance: its longest
    # gap across the switch (from its last write before the PAUSE to its first after the
    # RESUME) is the measured write-unavailability, -0.1 s (a commit in flight at the
    # PAUSE) to +0.5 s (the client's own interval and reconnect on a loaded machine)
    first, last = step_of(report, "pause-pool-dc2"), step_of(report, "route-pool-dc1")
    before = [t for _, t in stats.acknowledged if t <= first["started_at"]]
    after = [t for _, t in stats.acknowledged if t >= last["finished_at"]]
    gap = stats.longest_gap(since=before[-1], until=after[0])
    print(f"write_unavailability_s {unavailability['value']:.3f}, client gap {gap:.3f}")
    assert unavailability["value"] - 0.1 <= gap <= unavailability["value"] + 0.5

    lab.wait_home_end_state()
    assert lab.write_via_router(TABLE, "home-again") == lab.port("dc1")
    lab.wait_values_on("dc2", TABLE, {"home-again"})


# --------------------------------------------------------------------------- 3


def test_returning_stale_primary_gets_no_traffic(lab: Lab) -> None:
    make_table(lab)
    lab.unplanned_failover()
    lab.repair("dc1")  # comes back believing it is the primary

    status = lab.status()
    dc1 = status.db("dc1")
    assert dc1["role"] == "stale-primary", status.summary()
    assert dc1["data"]["fenced"] is True, status.summary()
    assert "fenced at the router" in dc1["detail"]
    router_dc1 = status.router("dc1")
    assert router_dc1["role"] != "active", status.summary()
    assert router_dc1["data"]["takes_new_sessions"] is False, router_dc1
    assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"

    # dc1 really does accept writes (it is a stale primary) ...
    with lab.connect("dc1") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    # ... yet clients' writes through the dsn land on dc2 and never on dc1
    for i in range(20):
        assert lab.write_via_router(TABLE, f"client-{i}") == lab.port("dc2")
    written = {f"client-{i}" for i in range(20)}
    assert written <= lab.values_on("dc2", TABLE)
    assert not written & lab.values_on("dc1", TABLE)
    # looking (status) did not change anything either
    status = lab.status()
    assert status.active_site == "dc2" and status.db("dc1")["role"] == "stale-primary"


# --------------------------------------------------------------------------- 4


def test_divergence_is_resolved_by_rewind(lab: Lab) -> None:
    make_table(lab)
    lab.unplanned_failover()
    acked_on_dc2 = {f"dc2-{i}" for i in range(10)}
    for value in sorted(acked_on_dc2):
        assert lab.write_via_router(TABLE, value) == lab.port("dc2")

    # the old primary comes back and takes writes directly: a split brain on its own
    # timeline that dc2 never saw
    lab.repair("dc1")
    diverged = {f"diverged-{i}" for i in range(5)}
    with lab.connect("dc1") as conn:
        for value in sorted(diverged):
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (value,))
        conn.execute("CREATE TABLE only_on_dc1 (v text)")
    assert diverged <= lab.values_on("dc1", TABLE)
    assert not diverged & lab.values_on("dc2", TABLE)

    doc = lab.failback()
    report = doc["report"]
    resync = step_of(report, "resync-dc1")
    assert resync["output"]["method"] == "rewind", resync
    assert resync["output"]["divergence"]["needs_rewind"] is True
    note = measurement(report, "resync.dc1.duration_s")["note"] or ""
    assert note.startswith("rewind:"), note
    shown = lab.run_show(doc["run_id"])
    assert step_of(shown["run"], "resync-dc1")["output"]["method"] == "rewind"
    # what the rewind erased was read first: exactly the rows dc1 took on its own
    # (DDL is not decoded: only_on_dc1 is not a change of rows)
    assert shown["diverged"]["captured"] is True, shown["diverged"]
    assert (shown["diverged"]["transactions"], shown["diverged"]["rows"]) == (5, 5)
    (ddl,) = shown["diverged"]["without_rows"]  # the CREATE TABLE, named, not decoded
    assert ddl["database"] == "app", ddl
    result = lab.cli("diverged", str(doc["run_id"]), "--format", "json")
    assert result.returncode == 0, result.stderr
    captured = result.json()
    assert {(c["database"], c["table"], c["op"]) for c in captured} == {
        ("app", f"public.{TABLE}", "insert")
    }
    assert {c["new"]["v"] for c in captured} == diverged
    assert {c["key"]["v"] for c in captured} == diverged

    lab.wait_home_end_state()
    on_dc1 = lab.values_on("dc1", TABLE)
    assert not diverged & on_dc1, "diverged rows survived the rewind"
    assert acked_on_dc2 | {"before"} <= on_dc1
    with lab.connect("dc1") as conn:
        exists = conn.execute("SELECT to_regclass('only_on_dc1')").fetchone()
    assert exists == (None,)
    lab.wait_values_on("dc2", TABLE, acked_on_dc2 | {"before"})
    assert not diverged & lab.values_on("dc2", TABLE)


# --------------------------------------------------------------------------- 5


def test_rewind_impossible_falls_back_to_reclone_keeping_old_data(lab: Lab) -> None:
    host = LocalHost()
    make_table(lab)
    with lab.connect("dc1") as conn:
        hints = conn.execute("SHOW wal_log_hints").fetchone()
        checksums = conn.execute("SHOW data_checksums").fetchone()
    # the lab relies on checksums for pg_rewind, not on wal_log_hints: with checksums
    # disabled, pg_rewind is honestly impossible
    assert hints == ("off",) and checksums == ("on",)

    lab.unplanned_failover()
    for i in range(5):
        lab.write_via_router(TABLE, f"dc2-{i}")
    lab.repair("dc1")
    diverged = {f"diverged-{i}" for i in range(3)}
    with lab.connect("dc1") as conn:
        for value in sorted(diverged):
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s)", (value,))

    # stop dc1 cleanly, disable its checksums (wal_log_hints stays off), start it again
    node = lab_node(host, lab.info, "dc1")
    stop(host, node, mode="fast", timeout=60)
    disabled = host.run(
        [node.bin("pg_checksums"), "--disable", "-D", node.pgdata],
        as_user=node.os_user,
        timeout=120,
    )
    assert disabled.ok, disabled.stderr
    cd = controldata(host, node)
    assert cd["Data page checksum version"].strip() == "0"
    assert cd["wal_log_hints setting"].strip() == "off"
    lab.repair("dc1")
    assert lab.status().db("dc1")["role"] == "stale-primary"
    old_pgdata = Path(node.pgdata)
    old_system_id = lab.status().db("dc1")["data"]["system_identifier"]

    doc = lab.failback()
    report = doc["report"]
    resync = step_of(report, "resync-dc1")["output"]
    assert resync["method"] == "reclone", resync
    assert "rewind impossible" in resync["reason"]
    assert "checksums" in resync["reason"] and "wal_log_hints" in resync["reason"]
    note = measurement(report, "resync.dc1.duration_s")["note"] or ""
    assert note.startswith("reclone:") and "rewind impossible" in note, note

    # the old data directory was moved aside, not deleted
    moved = Path(resync["details"]["moved_to"])
    assert moved != old_pgdata and moved.parent == old_pgdata.parent
    assert moved.name.startswith(old_pgdata.name + ".failback-old-")
    assert (moved / "PG_VERSION").is_file() and (moved / "global" / "pg_control").is_file()
    moved_cd = host.run(
        [node.bin("pg_controldata"), "-D", str(moved)], as_user=node.os_user, timeout=30
    )
    assert moved_cd.ok, moved_cd.stderr
    assert "Data page checksum version:           0" in moved_cd.stdout

    status = lab.wait_home_end_state()
    assert status.db("dc1")["data"]["system_identifier"] == old_system_id
    on_dc1 = lab.values_on("dc1", TABLE)
    assert not diverged & on_dc1
    assert {f"dc2-{i}" for i in range(5)} | {"before"} <= on_dc1
    # the re-clone came from dc2, which has checksums: dc1 can be rewound next time
    assert status.db("dc1")["data"]["data_checksums"] is True


# --------------------------------------------------------------------------- 3b


def test_failover_to_a_stale_primary_is_refused(lab: Lab) -> None:
    """dc2 took writes after the failover; stale dc1 came back; now dc2 crashes.

    An unplanned failover to dc1 would make the stale primary (timeline 1, without
    dc2's writes) the service's primary again: every write acknowledged on dc2 since the
    first failover silently disappears for clients. dc1 is listed in needs_resync; the
    planner must refuse it as a target (promise 1: "a returning old primary is fenced
    until it has been resynced"; promise 2: a loss is measured, never hidden).
    """
    make_table(lab)
    lab.unplanned_failover()
    assert lab.write_via_router(TABLE, "acked-on-dc2") == lab.port("dc2")
    lab.repair("dc1")
    assert lab.status().db("dc1")["role"] == "stale-primary"
    lab_break(lab.dir, "dc2", "db")
    runs_before = lab.runs()

    result = lab.cli("failover", SERVICE, "--yes", "--json")
    doc = result.json()
    if result.returncode == 0:  # the bug: show precisely what clients now see
        with lab.connect_dsn() as conn:
            rows = conn.execute(f"SELECT v FROM {TABLE}").fetchall()
            port = conn.execute("SELECT inet_server_port()").fetchone()
        measured = [m["name"] for m in doc["report"]["measurements"]]
        pytest.fail(
            "failover to the stale primary dc1 succeeded: clients now write to "
            f"port {port} (dc1) which has {sorted(r[0] for r in rows)} - 'acked-on-dc2' is "
            f"gone; steps {[(s['id'], s['status']) for s in doc['report']['steps']]}; "
            f"measurements {measured} (no possible_loss_bytes)"
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dc1" in doc["error"] and "resync" in (doc["error"] + (doc["hint"] or ""))
    assert lab.runs() == runs_before
    assert lab.status().active_site == "dc2"
    assert lab_status(lab.dir)["router"]["servers"]["dc1"] == "maint"
