"""A PostgreSQL primary that fences itself (a control-plane node cut off from etcd),
against a real primary/standby pair: new writes refused, open sessions ended, the mark
seen by observation, a standby left alone, the fence lifted only when it is failback's,
and dropped when the server becomes a standby again."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest

from failback.drivers.postgres import self_fence
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.node_facts import observe
from failback.drivers.postgres.process import start, stop
from failback.drivers.postgres.replication import configure_standby
from tests.integration.pgcluster import APP_PASSWORD, APP_USER, PgPair, pg_pair

pytestmark = pytest.mark.integration


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as fresh:
        yield fresh


def app_dsn(pair: PgPair) -> str:
    node = pair.primary
    return (
        f"host={node.host} port={node.port} dbname=app user={APP_USER} "
        f"password={APP_PASSWORD} connect_timeout=5"
    )


def write(dsn: str, value: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fenced (v int)")
        conn.execute("INSERT INTO fenced VALUES (%s)", (value,))


def test_a_fenced_primary_refuses_writes_ends_sessions_and_is_seen_as_fenced(
    pair: PgPair,
) -> None:
    dsn = app_dsn(pair)
    write(dsn, 1)
    held = psycopg.connect(dsn)  # a session open across the fence, mid-transaction
    held.execute("INSERT INTO fenced VALUES (2)")
    result = self_fence.fence(pair.host, pair.primary)
    assert result["fenced"] and result["how"] == "read-only" and result["marked"]
    assert result["sessions_ended"] >= 1
    with pytest.raises(psycopg.OperationalError):
        held.execute("COMMIT")  # its session was ended: the write is not acknowledged
    held.close()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        write(dsn, 3)
    seen = observe(pair.host, pair.primary)
    assert seen.role == "primary" and seen.read_only and seen.self_fenced
    assert os.path.exists(self_fence.mark_path(pair.primary))
    # the standby had nothing to fence
    assert self_fence.fence(pair.host, pair.standby)["fenced"] is False
    assert self_fence.unfence(pair.host, pair.primary) is True
    write(dsn, 4)
    assert not os.path.exists(self_fence.mark_path(pair.primary))
    with psycopg.connect(dsn) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT v FROM fenced")) == [1, 4]


def test_a_persons_read_only_switch_is_never_lifted(pair: PgPair) -> None:
    with connect(pair.primary) as conn:
        conn.autocommit = True
        conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        conn.execute("SELECT pg_reload_conf()")
    assert self_fence.unfence(pair.host, pair.primary) is False
    seen = observe(pair.host, pair.primary)
    assert seen.read_only and not seen.self_fenced


def test_becoming_a_standby_drops_the_fence(pair: PgPair) -> None:
    """After a failover the fenced old primary is made a standby (a failback's resync):
    the read-only line and the mark go with it, so it is writable once promoted."""
    assert self_fence.fence(pair.host, pair.primary)["fenced"]
    stop(pair.host, pair.primary, mode="fast", timeout=30)
    configure_standby(pair.host, pair.primary, pair.standby)
    with open(os.path.join(pair.primary.pgdata, "postgresql.auto.conf")) as conf:
        auto = conf.read()
    assert "default_transaction_read_only" not in auto
    assert not os.path.exists(self_fence.mark_path(pair.primary))
    start(pair.host, pair.primary, timeout=60)
