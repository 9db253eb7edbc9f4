"""The database switch through PgBouncer: clients see a stall, never an error.

Real PostgreSQL pair, HAProxy and PgBouncer (transaction pooling, run as the
``postgres`` OS user) from the lab; the client is a real psycopg writer through
PgBouncer that records every acknowledged commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from failback.drivers.pgbouncer.admin import Pgbouncer
from failback.lab import lab_break
from failback.lab.pg import ADMIN_USER
from failback.lab.probe import WriteProbe
from tests.integration.labfixtures import Lab, assert_home, lab_base, measurement, new_lab

pytestmark = pytest.mark.integration


@pytest.fixture
def lab() -> Iterator[Lab]:
    with lab_base("fb-pool-") as root:
        yield new_lab(root)


def wait_for_writes(probe: WriteProbe, *, since: float, count: int = 10) -> None:
    """Until the client had ``count`` writes acknowledged after ``since`` (a state)."""
    deadline = time.monotonic() + 60
    while len(probe.stats.acked_ids(since=since)) < count:
        assert time.monotonic() < deadline, f"the client made no progress since {since}"
        time.sleep(0.01)


def pool_port(lab: Lab) -> int:
    assert lab.info.pool is not None
    return int(lab.info.pool.port)


def pool_target(lab: Lab) -> str:
    pool = lab.status().component("pool", "dc1")
    return str(pool["data"]["targets"]["app"])


def test_failback_through_pgbouncer_has_no_client_error_and_no_lost_write(lab: Lab) -> None:
    probe = WriteProbe(lab.info.dsn, interval=0.01).start()
    try:
        wait_for_writes(probe, since=0)
        failover = lab.failover("--planned")
        assert failover["status"] == "succeeded", failover
        assert pool_target(lab) == f"127.0.0.1:{lab.port('dc2')}"
        started = time.time()
        failback = lab.failback()
        assert failback["status"] == "succeeded", failback
        wait_for_writes(probe, since=time.time())
    finally:
        stats = probe.stop()
    assert stats.failures == [], stats.failures[:5]
    assert probe.missing(stats.acked_ids()) == []
    assert stats.acked_ids(since=started), "the writer made no progress during the failback"
    unavailability = measurement(failback["report"], "write_unavailability_s")
    assert unavailability["step"] == "route-pool-dc1"
    assert pool_target(lab) == f"127.0.0.1:{lab.port('dc1')}"
    assert_home(lab, lab.status())


def test_a_long_transaction_makes_pause_give_up_and_roll_back(lab: Lab) -> None:
    """PAUSE waits for running transactions; past pause_timeout the run rolls back:
    PgBouncer resumed on the old primary, the database did not move."""
    text = lab.config.read_text().replace(
        "databases_file:", "pause_timeout: 1s\n          databases_file:", 1
    )
    config = lab.dir / "short-pause.yaml"
    config.write_text(text)
    lab.failover("--planned")
    holder = psycopg.connect(lab.info.dsn, autocommit=False, prepare_threshold=None)
    holder.execute("SELECT 1")  # a transaction now holds a server connection ...
    try:  # ... until the run is over, however long it takes to reach its PAUSE
        result = lab.cli("failback", "app", "--yes", "--json", config=config)
    finally:
        holder.close()
    doc = result.json()
    assert result.returncode == 1
    assert doc["status"] == "rolled-back", doc
    assert "PAUSE did not finish" in doc["error"]
    status = lab.status()
    assert status.active_site == "dc2"
    assert status.db("dc2")["role"] == "primary"
    pool = status.component("pool", "dc2")
    assert pool["role"] == "active" and pool["data"]["paused"] is False
    with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (lab.port("dc2"),)


def test_an_unplanned_failover_kills_what_the_failed_site_still_holds(lab: Lab) -> None:
    """A failed site's transactions never finish (a partitioned server does not answer):
    an unplanned failover waits a moment for them, then KILLs the pool's connections
    instead of rolling back. The holder loses its connection; new clients reach dc2."""
    holder = psycopg.connect(lab.info.dsn, autocommit=False, prepare_threshold=None)
    holder.execute("SELECT 1")  # holds a server connection to dc1 for the whole run
    try:
        doc = lab.failover("--force")  # dc1 treated as failed: the unplanned procedure
        with pytest.raises(psycopg.OperationalError):
            holder.execute("SELECT 1")
    finally:
        holder.close()
    events = lab.run_show(int(doc["run_id"]))["events"]
    killed = [e for e in events if e["kind"] == "pool.killed"]
    assert killed and killed[0]["data"]["databases"] == ["app"], events
    with psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SELECT inet_server_port()").fetchone() == (lab.port("dc2"),)
    lab.repair("dc1")  # the fence stopped it: it comes back as a stale primary
    lab.failback()


def pool_console(lab: Lab) -> Pgbouncer:
    """The lab's PgBouncer's admin console, as the driver reaches it."""
    assert lab.info.pool is not None
    pool = lab.info.pool
    return Pgbouncer(
        host=pool.address, port=int(pool.port), admin_user=ADMIN_USER,
        admin_password=lab.secret("failback"), databases_file=pool.databases_file,
    )  # fmt: skip


def wait_in_log(path: Path, text: str, *, after: int, timeout: float = 30) -> None:
    """Until ``text`` appears in the file past byte ``after`` (a state, not a time)."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace")[after:]:
        assert time.monotonic() < deadline, f"{text!r} never in {path}"
        time.sleep(0.02)


def test_an_unplanned_failover_lifts_the_pools_login_backoff(lab: Lab) -> None:
    """After a refused connection attempt PgBouncer opens none for that pool during
    ``server_login_retry`` (15 s by default), even after a RELOAD pointed it elsewhere:
    the pool outlives the RELOAD. dc1's server dies on a live machine, a client's query
    through the pool makes PgBouncer try dc1 (refused), then the unplanned failover
    points the pool at dc2. With the backoff at 600 s, the held query is answered by dc2
    only if the route lifted the backoff (otherwise PgBouncer answers it with
    query_wait_timeout after 30 s, and every retry the same); the setting is put back."""
    console = pool_console(lab)
    assert lab.info.pool is not None
    log = Path(lab.info.pool.logfile)
    # in the file, not SET: the route's RELOAD puts back what the file says
    ini = Path(lab.info.pool.config)
    ini.write_text(
        ini.read_text().replace("server_login_retry = 1\n", "server_login_retry = 600\n")
    )
    console.command("RELOAD")
    assert console.setting("server_login_retry") == "600"
    client = psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None)
    client.execute("SELECT 1")  # the pool exists and knows dc1's welcome message
    lab.record_primary_position()
    answers: list[int] = []

    def held_query(conn: psycopg.Connection[Any]) -> None:
        """Like an application: retry on error until answered (or the test gives up)."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not answers:
            try:
                if conn.closed:
                    conn = psycopg.connect(lab.info.dsn, autocommit=True, prepare_threshold=None)
                row = conn.execute("SELECT inet_server_port()").fetchone()
                answers.append(int(row[0]) if row else 0)
            except psycopg.Error:
                conn.close()
                time.sleep(0.05)
        conn.close()

    before = log.stat().st_size
    lab_break(lab.dir, "dc1", "db")
    worker = threading.Thread(target=held_query, args=(client,), daemon=True)
    worker.start()
    wait_in_log(log, "closing because: connect failed", after=before)  # backoff on
    doc = lab.failover()
    worker.join(timeout=120)
    assert answers == [lab.port("dc2")], "the held client was not served after the RESUME"
    plan = lab.run_show(int(doc["run_id"]))["plan"]
    route = next(s for s in plan["steps"] if s["id"] == "route-pool-dc2")
    assert route["params"].get("lift_login_backoff") is True, route
    assert console.setting("server_login_retry") == "600"


def test_wrong_admin_password_is_a_clear_error_and_changes_nothing(lab: Lab) -> None:
    wrong = lab.dir / "secrets" / "wrong.pass"
    wrong.write_text("not-the-password\n")
    text = lab.config.read_text().replace(
        f"admin_password: file:{lab.dir}/secrets/failback.pass",
        f"admin_password: file:{wrong}",
    )
    config = lab.dir / "wrong-admin.yaml"
    config.write_text(text)
    status = lab.status(config=config)
    pool = status.component("pool", "dc1")
    assert pool["healthy"] is False
    assert "PgBouncer admin console" in pool["detail"]
    result = lab.cli("failover", "app", "--planned", "--yes", config=config)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    after = lab.status()
    assert after.active_site == "dc1" and after.db("dc1")["role"] == "primary"
    assert pool_target(lab) == f"127.0.0.1:{lab.port('dc1')}"
