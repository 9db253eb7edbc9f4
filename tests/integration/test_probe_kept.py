"""The monitor's probes keep their PostgreSQL connections (``failback.drivers.kept``),
against real PostgreSQL 15 (no mocks): reused while the server serves, replaced when it
restarts, dropped and counted as a failed observation when it stops answering.

Elapsed times are bounded only loosely (a shared, noisy machine): what is asserted is
that an observation ends (within the connect timeout plus a margin), not how fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from failback.drivers.kept import Kept, keeping
from failback.drivers.postgres.capture_kept import keep_capture, keep_capture_at_hand
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.facts import observe_postgres_at_hand, observe_postgres_component
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.node_facts import observe, server_key
from failback.drivers.postgres.process import start, stop
from failback.hosts import LocalHost
from tests.integration.pgcluster import pg_single

pytestmark = pytest.mark.integration


@pytest.fixture
def single() -> Iterator[tuple[LocalHost, PgNode]]:
    with pg_single() as (host, node):
        yield host, node


def _backend_pid(kept: Kept, node: PgNode) -> int:
    """The server process behind the connection ``kept`` holds for ``node`` (put back)."""
    taken = kept.take(server_key(node))
    assert taken is not None, "no connection kept"
    conn, _ = taken
    try:
        return int(conn.info.backend_pid)
    finally:
        kept.give(server_key(node), taken, conn.close)


def test_a_kept_connection_is_reused_and_replaced_after_the_server_restarts(
    single: tuple[LocalHost, PgNode],
) -> None:
    host, node = single
    kept = Kept()
    try:
        with keeping(kept):
            first = observe(host, node)
            assert (first.reachable, first.role) == (True, "primary"), first.error
            assert kept.idle(server_key(node)) == 1
            pid = _backend_pid(kept, node)
            again = observe(host, node)
            assert (again.reachable, again.role) == (True, "primary")
            assert _backend_pid(kept, node) == pid, "the kept connection was not reused"
            fixed = ("system_identifier", "data_directory", "server_version", "rewind_possible")
            assert [getattr(again, f) for f in fixed] == [getattr(first, f) for f in fixed]
            assert again.data_directory is not None

            stop(host, node, mode="fast", timeout=30)
            start(host, node, timeout=60)
            # the kept connection broke when the server stopped: not a failure, the
            # observation is made afresh, as a new client sees the server now
            restarted = observe(host, node)
            assert (restarted.reachable, restarted.role) == (True, "primary"), restarted.error
            assert _backend_pid(kept, node) != pid
            assert kept.idle(server_key(node)) == 1 and kept.open(server_key(node)) == 1

            stop(host, node, mode="immediate", timeout=30)
            started = time.monotonic()
            down = observe(host, node, timeout=1.0)
            assert (down.reachable, down.role) == (False, "down")
            assert time.monotonic() - started < 10
            assert kept.idle(server_key(node)) == 0, "a broken connection must not be kept"
            assert kept.open(server_key(node)) == 0
    finally:
        kept.close()


def test_a_kept_connection_to_a_server_that_stops_answering_fails_the_observation(
    single: tuple[LocalHost, PgNode],
) -> None:
    """The backend behind the kept connection is stopped (SIGSTOP: a hung server, which
    TCP alone would wait on for minutes): the observation ends after the connect timeout
    and says the server is down; the connection is dropped, the next one is fresh."""
    host, node = single
    kept = Kept()
    try:
        with keeping(kept):
            assert observe(host, node).reachable
            pid = _backend_pid(kept, node)
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                hung = observe(host, node, timeout=1.0)
                took = time.monotonic() - started
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            print(f"[timing] observation on a stopped backend: {took * 1000:.0f} ms")
            assert 0.9 <= took < 1.0 + 5.0, took
            assert (hung.reachable, hung.role) == (False, "down")
            assert "no answer within 1s" in (hung.error or ""), hung.error
            assert kept.idle(server_key(node)) == 0 and kept.open(server_key(node)) == 0
            fresh = observe(host, node)
            assert (fresh.reachable, fresh.role) == (True, "primary")
            assert _backend_pid(kept, node) != pid
    finally:
        kept.close()


def test_without_keeping_every_observation_connects_afresh(
    single: tuple[LocalHost, PgNode],
) -> None:
    """A run and ``failback status`` observe as before: nothing is kept."""
    host, node = single
    kept = Kept()
    with keeping(None):
        assert observe(host, node).reachable
    assert kept.idle(server_key(node)) == 0
    kept.close()


def test_what_the_server_can_change_is_read_afresh_on_a_kept_connection(
    single: tuple[LocalHost, PgNode],
) -> None:
    """A reloadable setting changed while the connection stays open (a self-fence makes
    the primary read-only this way) is seen at the next observation on it."""
    host, node = single
    kept = Kept()
    try:
        with keeping(kept):
            assert observe(host, node).read_only is False
            pid = _backend_pid(kept, node)
            with connect(node) as conn:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            seen = observe(host, node)
            while not seen.read_only and time.monotonic() < deadline:
                time.sleep(0.05)
                seen = observe(host, node)
            assert seen.read_only and seen.role == "primary"
            assert _backend_pid(kept, node) == pid, "seen on the kept connection"
    finally:
        kept.close()
        with connect(node) as conn:
            conn.execute("SET default_transaction_read_only = off")
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")


def _settings_of(node: PgNode) -> SimpleNamespace:
    """A postgres component's settings as the topology gives them (what the driver's
    ``node_from_component`` reads), naming ``node``: one per service in a monitor whose
    services share a database."""
    return SimpleNamespace(
        options=SimpleNamespace(
            user=node.user,
            password=node.password,
            dbname=node.dbname,
            replication_user=node.replication_user,
            replication_password=node.replication_password,
            bin_dir=node.bin_dir,
            connect_timeout=node.connect_timeout,
        ),
        sites={
            node.site: SimpleNamespace(
                host=node.host,
                port=node.port,
                pgdata=node.pgdata,
                os_user=node.os_user,
                conf_dir=node.conf_dir,
                log_file=node.log_file,
            )
        },
    )


def test_probes_of_one_database_share_an_observation_but_never_a_failure(
    single: tuple[LocalHost, PgNode],
) -> None:
    """Two services naming the same database: under the monitor's ``keeping`` with a
    ``share_within``, the second probe uses the first one's observation (and so can the
    event loop, ``observe_postgres_at_hand``); once that is older than ``share_within``
    the database is observed again, and one seen down is observed again by every probe
    (never shared), so its return is seen by the next one."""
    host, node = single
    site = node.site
    app, billing = _settings_of(node), _settings_of(node)
    share_within = 3.0
    kept = Kept()
    try:
        with keeping(kept, share_within=share_within):
            assert observe_postgres_at_hand("db", app, site) is None, "nothing observed yet"
            first = observe_postgres_component(host, "app", "db", app, site)
            answered = time.monotonic()
            assert (first.healthy, first.role) == (True, "primary"), first.detail
            second = observe_postgres_component(host, "billing", "db", billing, site)
            at_hand = observe_postgres_at_hand("db", app, site)
            if time.monotonic() - answered < share_within:  # (a slower machine: not shared)
                assert second.observed_at == first.observed_at, "observed again"
                assert (second.data, second.detail) == (first.data, first.detail)
                assert second.data is not first.data, "each component's data is its own"
                assert at_hand is not None and at_hand.observed_at == first.observed_at
                assert (at_hand.healthy, at_hand.role) == (True, "primary")
                assert at_hand.data == first.data
            assert observe_postgres_at_hand("db", app, "elsewhere") is None, "no such node"

            time.sleep(max(0.0, share_within - (time.monotonic() - answered)) + 0.05)
            assert observe_postgres_at_hand("db", billing, site) is None, "older than asked"
            stop(host, node, mode="immediate", timeout=30)
            down = observe_postgres_component(host, "app", "db", app, site)
            assert (down.healthy, down.role) == (False, "down")
            assert observe_postgres_at_hand("db", billing, site) is None, "a failure shared"
            again = observe_postgres_component(host, "billing", "db", billing, site)
            assert not again.healthy and again.observed_at > down.observed_at, "shared"
            start(host, node, timeout=60)
            back = observe_postgres_component(host, "app", "db", app, site)
            assert (back.healthy, back.role) == (True, "primary"), back.detail
        with keeping(kept, share_within=0.0):
            assert observe_postgres_at_hand("db", app, site) is None, "nothing shared"
            alone = observe_postgres_component(host, "app", "db", app, site)
            assert alone.observed_at > back.observed_at
    finally:
        kept.close()


def test_capture_rounds_of_one_primary_are_shared_but_never_a_failure(
    single: tuple[LocalHost, PgNode],
) -> None:
    """Two services naming the same primary: under the monitor's ``keeping`` with a
    ``share_within``, the second service's capture round is the first one's (a copy of
    it), and so is what the event loop finds at hand. Proved by stopping the server after
    the first round: within ``share_within`` no question reaches it. Once that round is
    older, each round asks the stopped server and raises: a failure is nobody else's.
    Without ``keeping`` every round asks (the server answers again after its start)."""
    host, node = single
    site = node.site
    app, billing = _settings_of(node), _settings_of(node)
    share_within = 3.0
    kept = Kept()
    try:
        with keeping(kept, share_within=share_within):
            assert keep_capture_at_hand(app, site, "dc2") is None, "no round made yet"
            first = keep_capture(app, site, "dc2")
            answered = time.monotonic()
            assert "wal_level is replica" in str(first["problem"]), first
            stop(host, node, mode="immediate", timeout=30)
            if time.monotonic() - answered < share_within:  # (a slower machine: not shared)
                second = keep_capture(billing, site, "dc2")
                assert second == first and second is not first, "a copy of the first round"
                assert keep_capture_at_hand(app, site, "dc2") == first
                assert keep_capture_at_hand(app, site, "dc3") is None, "another standby"

            time.sleep(max(0.0, share_within - (time.monotonic() - answered)) + 0.05)
            assert keep_capture_at_hand(app, site, "dc2") is None, "older than asked"
            with pytest.raises(PgError):
                keep_capture(app, site, "dc2")
            assert keep_capture_at_hand(billing, site, "dc2") is None, "a failure shared"
            with pytest.raises(PgError):
                keep_capture(billing, site, "dc2")
        start(host, node, timeout=60)
        alone = keep_capture(app, site, "dc2")
        assert alone == first, "the server's own answer again"
    finally:
        kept.close()
