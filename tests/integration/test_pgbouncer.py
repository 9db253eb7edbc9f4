"""The database switch through PgBouncer: clients see a stall, never an error.

Real PostgreSQL pair, HAProxy and PgBouncer (transaction pooling, run as the
``postgres`` OS user) from the lab; the client is a real psycopg writer through
PgBouncer that records every acknowledged commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

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
