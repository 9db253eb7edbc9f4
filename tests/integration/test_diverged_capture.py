"""Issue 15, part 1: what an unplanned failover left on the old primary is captured exactly
before the failback's resync erases it.

Real PostgreSQL with wal2json, through the real CLI. Replication to dc2 is held back
(its ``primary_conninfo`` emptied), rows are written only to dc1 — inserts, updates and
deletes in several tables and two databases, one table without a primary key — dc1 is
SIGKILLed, the service fails over, dc1 comes back, and the failback captures: the set
must equal exactly the rows written only to dc1, no more (nothing dc2 also has) and no
less, the unkeyed changes named as such. The SQL it prints re-applies them. Then the
case where capture is impossible: the failback stops and asks, and approval resyncs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from failback.drivers.postgres.capture import socket_dir
from failback.drivers.postgres.lsn import parse_lsn
from failback.drivers.postgres.process import running_postmaster
from failback.hosts import LocalHost
from failback.lab import lab_break
from failback.lab.pg import lab_node
from tests.conftest import failback_argv
from tests.integration.labfixtures import SERVICE, Lab, lab_base, new_lab
from tests.integration.pgholds import (
    advance_until,
    isolated_socket,
    newest_run,
    start_cli,
    steps_in_journal,
    stopped_at_start,
)
from tests.integration.test_api import auth, start_server

pytestmark = pytest.mark.integration

ODD_DB = 'we|ird\'db host=127.0.0.9 "x"'
"""A database name that would break a capture pasting names into SQL or psql's -d."""
SLOTS = (
    "SELECT slot_name, database, confirmed_flush_lsn::text FROM pg_replication_slots"
    " WHERE slot_name LIKE 'failback\\_diverged\\_%' ORDER BY database"
)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-diverged-") as root:
        yield new_lab(root)


def connect(lab: Lab, site: str, dbname: str = "app") -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=lab.address(site), port=lab.port(site), dbname=dbname, user="failback",
        password=lab.secret("failback"), autocommit=True, connect_timeout=5,
    )  # fmt: skip


def lsn(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None and row[0] is not None, sql
    return parse_lsn(str(row[0]))


def wait_until(what: str, predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def replicated(lab: Lab) -> None:
    """dc2 replayed everything dc1 wrote so far."""
    with connect(lab, "dc1") as dc1:
        target = lsn(dc1, "SELECT pg_current_wal_lsn()")
    with connect(lab, "dc2") as dc2:
        wait_until("dc2 to replay", lambda: lsn(dc2, "SELECT pg_last_wal_replay_lsn()") >= target)


def hold_back_replication(lab: Lab) -> None:
    """dc2 stops receiving: what dc1 commits from now on exists only there."""
    with connect(lab, "dc2") as dc2:
        dc2.execute("ALTER SYSTEM SET primary_conninfo = ''")
        dc2.execute("SELECT pg_reload_conf()")
    with connect(lab, "dc1") as dc1:
        wait_until(
            "dc2's walsender to go",
            lambda: (
                dc1.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'dc2'"
                ).fetchone()
                == (0,)
            ),
        )


def fail_over_from_cut_off_dc1(lab: Lab) -> None:
    """dc1 dies with commits dc2 never received; the service fails over to dc2, whose
    own setting is put back (it will be a standby again); dc1 comes back."""
    lab_break(lab.dir, "dc1", "db")
    lab.failover("--accept-data-loss")
    with connect(lab, "dc2") as dc2:
        dc2.execute("ALTER SYSTEM RESET primary_conninfo")
        dc2.execute("SELECT pg_reload_conf()")
    lab.repair("dc1")


def key_of(change: dict[str, Any]) -> tuple[Any, ...]:
    """A change as a comparable tuple (values as sorted pairs)."""

    def pairs(values: dict[str, Any] | None) -> tuple[tuple[str, Any], ...] | None:
        return None if values is None else tuple(sorted(values.items()))

    return (
        change["database"], change["table"], change["op"],
        pairs(change["key"]), pairs(change["new"]),
    )  # fmt: skip


def test_the_monitor_keeps_the_slots_at_what_dc2_replayed(lab: Lab) -> None:
    with connect(lab, "dc1") as dc1:
        slots = dc1.execute(SLOTS).fetchall()
        assert [db for _, db, _ in slots] == ["app", "postgres"], slots  # made by lab up
        before = {name: parse_lsn(at) for name, _, at in slots}
        dc1.execute("CREATE TABLE warmup (id int PRIMARY KEY)")
        dc1.execute("INSERT INTO warmup SELECT generate_series(1, 1000)")
        # a database made later gets its slot from the monitor; its name is data, never
        # SQL or connection settings (a separator, a newline, a quote, "host=")
        dc1.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ODD_DB)))
    replicated(lab)
    with connect(lab, "dc2") as dc2:
        replayed = lsn(dc2, "SELECT pg_last_wal_replay_lsn()")
    monitor = subprocess.Popen(
        failback_argv("monitor", "-c", str(lab.config)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with connect(lab, "dc1") as dc1:

            def advanced() -> bool:
                assert monitor.poll() is None, monitor.communicate()
                rows = dc1.execute(SLOTS).fetchall()
                # a slot being created shows no position yet (it waits for transactions)
                return len(rows) == 3 and all(
                    at is not None and (name not in before or parse_lsn(at) >= replayed)
                    for name, _, at in rows
                )

            wait_until("the monitor to move the slots", advanced)
            rows = dc1.execute(SLOTS).fetchall()
        with connect(lab, "dc2") as dc2:
            now_replayed = lsn(dc2, "SELECT pg_last_wal_replay_lsn()")
        assert sorted(db for _, db, _ in rows) == sorted(["app", "postgres", ODD_DB])
        for name, _, at in rows:
            # forward, and never past what the standby has: a slot past the fork
            # would skip commits
            assert before.get(name, 0) < parse_lsn(at) <= now_replayed, (name, at)

        def shown() -> dict[str, Any] | None:
            return (lab.status().doc.get("monitor") or {}).get("capture")

        wait_until("the monitor to show the capture", lambda: shown() is not None)
        capture = shown()
        assert capture is not None and capture["problem"] is None, capture
        assert capture["site"] == "dc1", capture
    finally:
        monitor.terminate()
        monitor.wait(timeout=60)


def test_capture_is_exactly_what_only_dc1_committed(lab: Lab) -> None:
    with connect(lab, "dc1") as dc1:
        dc1.execute("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
        dc1.execute("CREATE TABLE orders (id bigint PRIMARY KEY, item int, note text)")
        dc1.execute("CREATE TABLE audit (at text, what text)")  # no primary key
        dc1.execute("INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 10) g")
        dc1.execute("INSERT INTO orders VALUES (1, 1, 'first'), (2, 2, 'second'), (3, 3, 'x')")
        dc1.execute("INSERT INTO audit VALUES ('t0', 'created'), ('t1', 'kept')")
        dc1.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount numeric(20, 2))")
        dc1.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
        dc1.execute("INSERT INTO scratch SELECT generate_series(1, 5)")
        dc1.execute("UPDATE audit SET what = 'seen by dc2' WHERE at = 't1'")  # no key, before
    with connect(lab, "dc1", "postgres") as ops:
        ops.execute("CREATE TABLE ops_log (id int PRIMARY KEY, v text)")
        ops.execute("INSERT INTO ops_log VALUES (1, 'both sites')")
    with connect(lab, "dc1", ODD_DB) as odd:
        odd.execute("CREATE TABLE notes (id int PRIMARY KEY, v text)")
    replicated(lab)  # everything so far is on dc2 too: none of it may be reported

    hold_back_replication(lab)
    with connect(lab, "dc1") as dc1:
        with dc1.transaction():  # one transaction, two tables, three kinds of change
            dc1.execute("INSERT INTO items VALUES (11, 'new on dc1', 7)")
            dc1.execute("UPDATE orders SET note = 'dc1 note' WHERE id = 1")
            dc1.execute("DELETE FROM orders WHERE id = 2")
        dc1.execute("UPDATE items SET qty = qty + 100 WHERE id IN (3, 4)")
        dc1.execute("DELETE FROM items WHERE id = 10")
        dc1.execute("INSERT INTO audit VALUES ('t2', 'only on dc1')")
        dc1.execute("UPDATE audit SET what = 'changed' WHERE at = 't0'")  # no key: unreadable
        dc1.execute("DELETE FROM audit WHERE at = 't1'")  # no key: unreadable
        wanted_items = dc1.execute("SELECT * FROM items ORDER BY id").fetchall()
        wanted_orders = dc1.execute("SELECT * FROM orders ORDER BY id").fetchall()
        dc1.execute("INSERT INTO ledger VALUES (1, 12345678901234567.89)")  # every digit
        dc1.execute("TRUNCATE scratch")
    with connect(lab, "dc1", "postgres") as ops:
        ops.execute("INSERT INTO ops_log VALUES (2, 'only on dc1')")
    with connect(lab, "dc1", ODD_DB) as odd:
        odd.execute("INSERT INTO notes VALUES (1, 'in the odd database')")
    with connect(lab, "dc2") as dc2:
        assert dc2.execute("SELECT count(*) FROM items WHERE id = 11").fetchone() == (0,)

    fail_over_from_cut_off_dc1(lab)
    doc = lab.failback()
    run_id = int(doc["run_id"])
    lab.wait_home_end_state()

    result = lab.cli("diverged", str(run_id), "--format", "json")
    assert result.returncode == 0, result.stderr
    captured = result.json()
    expected = [
        ("app", "public.items", "insert", {"id": 11}, {"id": 11, "name": "new on dc1", "qty": 7}),
        ("app", "public.orders", "update", {"id": 1}, {"id": 1, "item": 1, "note": "dc1 note"}),
        ("app", "public.orders", "delete", {"id": 2}, None),
        ("app", "public.items", "update", {"id": 3}, {"id": 3, "name": "item 3", "qty": 103}),
        ("app", "public.items", "update", {"id": 4}, {"id": 4, "name": "item 4", "qty": 104}),
        ("app", "public.items", "delete", {"id": 10}, None),
        ("app", "public.audit", "insert", None, {"at": "t2", "what": "only on dc1"}),
        ("postgres", "public.ops_log", "insert", {"id": 2}, {"id": 2, "v": "only on dc1"}),
        ("app", "public.ledger", "insert", {"id": 1}, {"id": 1, "amount": "12345678901234567.89"}),
        ("app", "public.scratch", "truncate", None, None),
        (ODD_DB, "public.notes", "insert", {"id": 1}, {"id": 1, "v": "in the odd database"}),
    ]  # fmt: skip
    want = sorted(
        key_of({"database": d, "table": t, "op": o, "key": k, "new": n})
        for d, t, o, k, n in expected
    )
    assert sorted(key_of(c) for c in captured) == want, captured
    # one transaction of three changes: same xid and commit time, in commit order
    first = [c for c in captured if c["database"] == "app"][:3]
    assert [c["op"] for c in first] == ["insert", "update", "delete"], first
    assert len({(c["xid"], c["commit_time"]) for c in first}) == 1, first
    assert all(c["commit_time"] for c in captured), captured

    shown = lab.run_show(run_id)["diverged"]
    assert shown["captured"] is True, shown
    assert (shown["transactions"], shown["rows"]) == (8, 11), shown
    assert sorted((u["database"], u["table"], u["op"]) for u in shown["unkeyed"]) == [
        ("app", "public.audit", "delete"),
        ("app", "public.audit", "update"),
    ], shown
    assert len(shown["without_rows"]) == 2, shown  # their transactions, named
    # the fork is dc2's: the new timeline's history file names it
    with connect(lab, "dc1") as dc1:
        history = dc1.execute("SELECT pg_read_file('pg_wal/00000002.history')").fetchone()
    assert history is not None and shown["since_lsn"] in str(history[0]), (history, shown)

    # the API: counts for anyone, the rows (clients' data) only with the token
    server = start_server(lab)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.get(f"/api/v1/runs/{run_id}").json()["report"]["diverged"] == shown
            assert client.get(f"/api/v1/runs/{run_id}/diverged").status_code == 401
            rows = client.get(f"/api/v1/runs/{run_id}/diverged", headers=auth())
            assert rows.status_code == 200, rows.text
            assert sorted(key_of(c) for c in rows.json()["changes"]) == want
            text = client.get(
                f"/api/v1/runs/{run_id}/diverged", params={"format": "sql"}, headers=auth()
            )
            assert text.status_code == 200 and text.text.count("ROLLBACK;") == 3, text.text
    finally:
        server.stop()

    table = lab.cli("diverged", str(run_id))
    assert table.returncode == 0, table.stderr
    assert "8 transaction(s), 11 row(s) committed on dc1" in table.stdout, table.stdout
    assert "public.audit" in table.stderr and "no primary key" in table.stderr, table.stderr

    # the SQL is for review: run as it is, it changes nothing; made to COMMIT by a
    # person, it re-applies exactly the keyed changes
    sql = lab.cli("diverged", str(run_id), "--format", "sql")
    assert sql.returncode == 0, sql.stderr
    assert sql.stdout.count("ROLLBACK;") == 3 and "COMMIT" not in sql.stdout.split("--")[0]
    psql(lab, sql.stdout)
    with connect(lab, "dc1") as dc1:
        assert dc1.execute("SELECT count(*) FROM items WHERE id = 11").fetchone() == (0,)
    psql(lab, sql.stdout.replace("ROLLBACK;", "COMMIT;"))
    with connect(lab, "dc1") as dc1:
        assert dc1.execute("SELECT * FROM items ORDER BY id").fetchall() == wanted_items
        assert dc1.execute("SELECT * FROM orders ORDER BY id").fetchall() == wanted_orders
    with connect(lab, "dc1", "postgres") as ops:
        rows = ops.execute("SELECT * FROM ops_log ORDER BY id").fetchall()
    assert rows == [(1, "both sites"), (2, "only on dc1")]


def psql(lab: Lab, script: str) -> None:
    node = lab_node(LocalHost(), lab.info, "dc1")
    env = {"PATH": os.environ["PATH"], "PGPASSWORD": lab.secret("failback")}
    result = subprocess.run(
        [node.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", lab.address("dc1"),
         "-p", str(lab.port("dc1")), "-U", "failback", "-d", "app"],
        input=script, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_without_a_slot_the_failback_asks_before_erasing(lab: Lab) -> None:
    with connect(lab, "dc1") as dc1:
        # the verify step of the last failback gave dc1 slots: take them away
        dc1.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name LIKE 'failback\\_diverged\\_%'"
        )
        dc1.execute("CREATE TABLE lost (v text PRIMARY KEY)")
    replicated(lab)
    hold_back_replication(lab)
    with connect(lab, "dc1") as dc1:
        dc1.execute("INSERT INTO lost VALUES ('only on dc1')")
    fail_over_from_cut_off_dc1(lab)

    waiting = lab.cli("failback", SERVICE, "--yes", "--json", timeout=300)
    assert waiting.returncode != 0, waiting.stdout
    doc = waiting.json()
    assert doc["status"] == "waiting-approval", doc
    assert "cannot be read" in doc["error"] and "no capture slot" in doc["error"], doc
    run_id = int(doc["run_id"])
    shown = lab.run_show(run_id)
    assert shown["diverged"]["captured"] is False, shown["diverged"]
    steps = {s["id"]: s["status"] for s in shown["run"]["steps"]}
    assert steps["capture-dc1"] == "waiting" and steps["resync-dc1"] == "pending", steps
    with connect(lab, "dc1") as dc1:  # nothing erased yet: the row is still there
        assert dc1.execute("SELECT v FROM lost").fetchall() == [("only on dc1",)]

    approved = lab.cli("approve", "--yes", str(run_id), "--json", timeout=300)  # and it goes on
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert approved.json()["status"] == "succeeded", approved.stdout
    lab.wait_home_end_state()
    shown = lab.run_show(run_id)["diverged"]
    assert shown["captured"] is False and shown["loss_accepted"] is True, shown
    said = lab.cli("diverged", str(run_id))
    assert said.returncode == 0 and "nothing captured" in said.stdout, said.stdout
    with connect(lab, "dc1") as dc1:  # approved: erased by the resync, as the person chose
        assert dc1.execute("SELECT count(*) FROM lost").fetchone() == (0,)


def test_a_capture_killed_then_aborted_leaves_nothing_running_isolated(lab: Lab) -> None:
    """SIGKILL while dc1 runs isolated for its capture, then abort: the undo stops that
    start and removes its socket directory; the service stays at dc2, dc1 stopped."""
    lab.unplanned_failover()
    lab.repair("dc1")
    after = newest_run(lab, "failback")
    runner = start_cli(lab, "failback", SERVICE, "--yes", config=lab.config)
    try:
        run_id = stopped_at_start(lab, runner, kind="failback", after=after)
        os.kill(runner.pid, signal.SIGCONT)
        wait_until(
            "the capture to start",
            lambda: steps_in_journal(lab, run_id)["capture-dc1"][0] == "applying",
        )
        os.kill(runner.pid, signal.SIGSTOP)
        advance_until(runner, lambda: os.path.exists(isolated_socket(lab)))
    finally:
        runner.kill()
        runner.communicate(timeout=30)
    node = lab_node(LocalHost(), lab.info, "dc1")
    assert running_postmaster(LocalHost(), node) is not None  # the isolated start, left

    aborted = lab.cli("abort", str(run_id), "--yes", "--json", timeout=300)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    assert not os.path.exists(socket_dir(node))
    assert running_postmaster(LocalHost(), node) is None
    steps = steps_in_journal(lab, run_id)
    assert steps["resync-dc1"][0] == "pending", steps
    assert lab.status().active_site == "dc2"

    lab.repair("dc1")  # the stale primary was left stopped: a person starts it again
    doc = lab.failback()  # and a new failback captures and brings it home
    assert doc["report"]["diverged"]["captured"] is True, doc["report"]["diverged"]
    lab.wait_home_end_state()
