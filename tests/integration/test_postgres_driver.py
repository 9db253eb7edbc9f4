"""The PostgreSQL driver's primitives against real PostgreSQL 15 (no mocks).

Each destructive scenario gets its own primary + standby pair (pgcluster.pg_pair,
~2 s to build); read-only checks share one pair. Timings are printed (``-s``) for
the report, never asserted (shared, noisy machines).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from failback.drivers.kept import Kept, keeping
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.divergence import check_divergence
from failback.drivers.postgres.errors import (
    PgAuthFailed,
    PgStateError,
    PgUnreachable,
    PgWrongCluster,
    PgWrongDatabase,
)
from failback.drivers.postgres.lsn import format_lsn
from failback.drivers.postgres.node_facts import classify, ensure_same_cluster, observe
from failback.drivers.postgres.process import (
    controldata,
    kill_postmaster,
    postmaster_pid_file,
    promote,
    promoted_or_requested,
    running_postmaster,
    start,
    stop,
)
from failback.drivers.postgres.replication import (
    final_position,
    wait_for_catchup,
    wait_for_replay,
    wait_streaming,
)
from failback.drivers.postgres.resync import resync
from tests.integration.pgcluster import APP_PASSWORD, APP_USER, PgPair, pg_pair, pg_single
from tests.integration.pgholds import child_pid

pytestmark = pytest.mark.integration


def timing(label: str, seconds: float) -> None:
    print(f"[timing] {label}: {seconds * 1000:.1f} ms")


@pytest.fixture(scope="module")
def shared_pair() -> Iterator[PgPair]:
    with pg_pair() as pair:
        wait_streaming(pair.standby, timeout=20, upstream=pair.primary)
        yield pair


@pytest.fixture
def pair() -> Iterator[PgPair]:
    with pg_pair() as fresh:
        wait_streaming(fresh.standby, timeout=20, upstream=fresh.primary)
        yield fresh


def insert_rows(node, values: list[int]) -> None:
    with connect(node) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS probe (v int PRIMARY KEY)")
        for value in values:
            conn.execute("INSERT INTO probe VALUES (%s)", (value,))


def rows(node) -> list[int]:
    with connect(node) as conn:
        return [r[0] for r in conn.execute("SELECT v FROM probe ORDER BY v").fetchall()]


# --------------------------------------------------------------------------- observe


def test_observe_primary_and_standby(shared_pair: PgPair) -> None:
    p, s = shared_pair.primary, shared_pair.standby
    insert_rows(p, [1])
    wait_for_catchup(s, p, max_lag_bytes=0, timeout=20)
    po, so = observe(shared_pair.host, p), observe(shared_pair.host, s)
    assert po.role == "primary" and po.reachable and po.pgdata_ok
    assert so.role == "standby" and so.streaming and so.upstream == p.address
    assert po.system_identifier == so.system_identifier
    assert po.timeline == so.timeline == 1
    assert po.rewind_possible and so.rewind_possible
    assert po.postmaster_pid and po.postmaster_alive
    assert so.postmaster_pid and so.postmaster_alive and so.postmaster_pid != po.postmaster_pid
    assert po.pgdata_matches is True and so.pgdata_matches is True
    assert so.replay_lsn == po.current_lsn and so.lag_bytes == 0 and so.lag_seconds == 0
    assert [r.application_name for r in po.replicas] == ["dc2"]
    assert po.replicas[0].state == "streaming"
    json.dumps([po.to_dict(), so.to_dict()])  # JSON-serialisable
    assert po.to_dict()["current_lsn"] == format_lsn(po.current_lsn)
    assert ensure_same_cluster([po, so]) == po.system_identifier
    assert classify([po, so], active_site="dc1") == {"dc1": "primary", "dc2": "standby"}
    assert classify([po, so], active_site="dc2") == {"dc1": "stale-primary", "dc2": "standby"}


def test_a_data_directory_of_another_server_is_refused_by_the_observation(
    shared_pair: PgPair,
) -> None:
    """dc1's data directory with dc2's port (a topology mistake): the server answering
    SQL is dc2's, the postmaster.pid read for the files names dc1's port, and the
    observation refuses the node (as every action on it would), on a fresh connection
    and on a monitor's kept one."""
    wrong = dataclasses.replace(shared_pair.primary, port=shared_pair.standby.port)
    message = f"belongs to the PostgreSQL server on port {shared_pair.primary.port}"
    with pytest.raises(PgStateError, match=message):
        observe(shared_pair.host, wrong)
    kept = Kept()
    try:
        with keeping(kept):
            for _ in range(2):  # the second on the kept connection
                with pytest.raises(PgStateError, match=message):
                    observe(shared_pair.host, wrong)
    finally:
        kept.close()
    with pytest.raises(PgStateError, match=message):
        running_postmaster(shared_pair.host, wrong)


def test_a_data_directory_named_through_a_symlink_is_the_same(
    shared_pair: PgPair, tmp_path: Path
) -> None:
    """pgdata written through a symlink: not the path the server and the kernel give,
    so it is resolved (the same path as written needs no resolving), and the node is
    still the running server's, its postmaster alive."""
    link = tmp_path / "pgdata-link"
    link.symlink_to(shared_pair.primary.pgdata)
    node = dataclasses.replace(shared_pair.primary, pgdata=str(link))
    seen = observe(shared_pair.host, node)
    assert seen.data_directory == shared_pair.primary.pgdata != node.pgdata
    assert seen.pgdata_matches is True and seen.postmaster_alive
    assert running_postmaster(shared_pair.host, node) == seen.postmaster_pid


def test_wrong_password_is_auth_failed(shared_pair: PgPair) -> None:
    node = dataclasses.replace(shared_pair.primary, user=APP_USER, password="not-" + APP_PASSWORD)
    with pytest.raises(PgAuthFailed) as err:
        connect(node)
    message = err.value.message
    assert message.startswith(f"dc1: PostgreSQL at {node.address} refused user 'app'")
    assert "password authentication failed" in message
    assert "not-app-secret" not in message and "\n" not in message
    assert "secret reference" in (err.value.hint or "")
    ok = dataclasses.replace(node, password=APP_PASSWORD, dbname="app")
    with connect(ok) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("app",)
    obs = observe(shared_pair.host, node)
    assert obs.role == "unknown" and not obs.reachable and "refused user" in (obs.error or "")


def test_wrong_port_is_unreachable(shared_pair: PgPair) -> None:
    node = dataclasses.replace(shared_pair.primary, port=1)
    with pytest.raises(PgUnreachable) as err:
        connect(node)
    assert err.value.message == "dc1: PostgreSQL at 127.0.0.1:1 is unreachable (connection refused)"
    assert "port" in (err.value.hint or "")
    bad_db = dataclasses.replace(shared_pair.primary, dbname="nosuchdb")
    with pytest.raises(PgWrongDatabase, match="has no database 'nosuchdb'"):
        connect(bad_db)


def test_different_cluster_is_refused(shared_pair: PgPair) -> None:
    with pg_single("dc9") as (host, other):
        ours = observe(host, shared_pair.primary)
        theirs = observe(host, other)
        with pytest.raises(PgWrongCluster) as err:
            ensure_same_cluster([ours, theirs])
        assert str(ours.system_identifier) in err.value.message
        assert str(theirs.system_identifier) in err.value.message
        div = check_divergence(host, other, shared_pair.primary)
        assert not div.same_system
        with pytest.raises(PgWrongCluster):
            resync(host, other, shared_pair.primary)
        assert running_postmaster(host, other) is not None  # refused before touching it


# --------------------------------------------------------------------------- switchover


def test_clean_switchover_and_back_without_rewind(pair: PgPair) -> None:
    host, old, new = pair.host, pair.primary, pair.standby
    insert_rows(old, list(range(100)))

    t0 = time.monotonic()
    ckpt = stop(host, old, mode="fast")
    timing("stop fast (SIGINT + 1 ms polling)", time.monotonic() - t0)
    t1 = time.monotonic()
    target = final_position(host, old)
    timing("final_position (pg_controldata + pg_waldump)", time.monotonic() - t1)
    assert target > ckpt  # the end of the shutdown checkpoint record
    t2 = time.monotonic()
    replayed = wait_for_replay(new, target, timeout=10)
    timing("wait_for_replay", time.monotonic() - t2)
    assert replayed == target  # exactly the end of the old primary's WAL, not beyond
    t3 = time.monotonic()
    timeline = promote(new, timeout=30)
    timing("promote (pg_promote wait=>false + 2 ms polling)", time.monotonic() - t3)
    assert timeline == 2
    assert rows(new) == list(range(100))
    insert_rows(new, [1000])

    # Reality check: a clean switchover forks timeline 2 exactly at the old primary's end.
    div = check_divergence(host, old, new)
    assert div.same_system and not div.needs_rewind, div.reason
    assert div.fork_lsn == target == div.node_end_lsn
    result = resync(host, old, new)
    assert result.method == "none", result.reason
    wait_streaming(old, timeout=20, upstream=new)
    wait_for_catchup(old, new, max_lag_bytes=0, timeout=20)
    assert rows(old) == [*range(100), 1000]
    assert observe(host, old).timeline == 2

    # And back home: the same primitives the other way round.
    ckpt2 = stop(host, new, mode="fast")
    wait_for_replay(old, final_position(host, new), timeout=10)
    assert promote(old, timeout=30) == 3
    assert ckpt2 > ckpt
    assert resync(host, new, old).method == "none"
    wait_streaming(new, timeout=20, upstream=old)


def test_a_promotion_already_asked_for_is_waited_for_not_asked_again(pair: PgPair) -> None:
    """The runner died inside ``promote``: its request is pending (the standby's startup
    process is frozen here, so it cannot act on it yet). The resumed step's check waits
    for that request to take effect instead of promoting a second time."""
    host, standby = pair.host, pair.standby
    assert not promoted_or_requested(standby, timeout=5), "a standby, nothing pending"
    startup = child_pid(running_postmaster(host, standby), "startup")
    assert startup is not None, "the standby has no startup process"
    os.kill(startup, signal.SIGSTOP)
    try:
        with connect(standby) as conn:
            conn.execute("SELECT pg_promote(wait => false)")  # the interrupted apply
        threading.Timer(1.0, os.kill, (startup, signal.SIGCONT)).start()
        assert promoted_or_requested(standby, timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone once it promoted
            os.kill(startup, signal.SIGCONT)
    with connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
    assert promote(standby, timeout=30) == 2, "promoted once: timeline 2, not 3"
    assert promoted_or_requested(standby, timeout=5), "a primary"


# --------------------------------------------------------------------------- divergence


def _split_brain(pair: PgPair) -> list[int]:
    """Promote the standby while the old primary keeps taking writes, then fence (stop) it."""
    insert_rows(pair.primary, [1, 2, 3])
    wait_for_catchup(pair.standby, pair.primary, timeout=20)
    promote(pair.standby, timeout=30)
    insert_rows(pair.standby, [10])
    lost = [100, 101, 102]
    insert_rows(pair.primary, lost)  # diverged writes: only the old primary has them
    return lost


def test_diverged_old_primary_is_rewound(pair: PgPair) -> None:
    host, old, new = pair.host, pair.primary, pair.standby
    _split_brain(pair)
    stop(host, old, mode="fast")
    div = check_divergence(host, old, new)
    assert div.needs_rewind and not div.split_brain, div.reason
    assert div.node_timeline == 1 and div.source_timeline == 2
    assert div.fork_lsn is not None and div.node_end_lsn > div.fork_lsn
    assert "past the point" in div.reason
    t0 = time.monotonic()
    result = resync(host, old, new)
    timing("resync by rewind (incl. CHECKPOINT, pg_rewind, start)", time.monotonic() - t0)
    timing("  rewind step", result.details["rewind_s"])
    timing("    CHECKPOINT on the source", result.details["source_checkpoint_s"])
    timing("    pg_rewind", result.details["pg_rewind_s"])
    print("[pg_rewind]", result.details["pg_rewind"])
    assert result.method == "rewind", result.reason
    assert result.details["clean_shutdown"] == "none"
    wait_streaming(old, timeout=30, upstream=new)
    wait_for_catchup(old, new, timeout=20)
    assert rows(old) == [1, 2, 3, 10]  # the diverged rows are gone
    obs = observe(host, old)
    assert obs.role == "standby" and obs.timeline == 2 and obs.upstream == new.address
    # pg_rewind copied the source's config; our port (command line) and conninfo survived
    auto = host.read_text(f"{old.pgdata}/postgresql.auto.conf")
    assert auto.count("primary_conninfo") == 1 and f"port={new.port}" in auto


def test_rewind_impossible_falls_back_to_reclone() -> None:
    with pg_pair(data_checksums=False, wal_log_hints=False) as pair:
        wait_streaming(pair.standby, timeout=20)
        host, old, new = pair.host, pair.primary, pair.standby
        assert not observe(host, old).rewind_possible
        _split_brain(pair)
        stop(host, old, mode="fast")
        result = resync(host, old, new)
        assert result.method == "reclone"
        assert "rewind impossible" in result.reason and "wal_log_hints" in result.reason
        moved = result.details["moved_to"]
        assert moved.startswith(old.pgdata + ".failback-old-") and host.exists(moved)
        assert host.exists(f"{moved}/PG_VERSION")  # the old data is kept, never deleted
        wait_streaming(old, timeout=30, upstream=new)
        wait_for_catchup(old, new, timeout=20)
        assert rows(old) == [1, 2, 3, 10]


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _busy_backend(node) -> tuple[int, threading.Thread]:
    """A backend deep in a CPU-bound query (it never looks for its postmaster there)."""
    conn = connect(node)
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]

    def spin() -> None:
        with contextlib.suppress(Exception):  # killed under it
            conn.execute("SELECT count(*) FROM generate_series(1, 2000000000)")
        with contextlib.suppress(Exception):
            conn.close()

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    time.sleep(0.3)
    return pid, worker


def test_sigkilled_primary_restarts_and_diverged_crash_is_rewound(pair: PgPair) -> None:
    host, old, new = pair.host, pair.primary, pair.standby
    insert_rows(old, [0])
    backend, worker = _busy_backend(old)
    assert _alive(backend)
    pid = kill_postmaster(host, old)
    assert pid is not None
    # the whole server died with its postmaster: no backend of it can still acknowledge
    # a commit (one busy in a query would otherwise run on for minutes, orphaned); the
    # signal is delivered as the kernel schedules it, hence a moment's grace
    deadline = time.monotonic() + 2.0
    while _alive(backend) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(backend), "a backend outlived the killed postmaster"
    worker.join(10)
    obs = observe(host, old)
    assert obs.role == "down" and not obs.postmaster_alive
    assert postmaster_pid_file(host, old) is not None  # the stale lock file stays
    t0 = time.monotonic()
    start(host, old, timeout=60)  # waits out the zombie and the orphaned children
    timing("start after SIGKILL (zombie window + crash recovery)", time.monotonic() - t0)
    assert rows(old) == [0]
    wait_streaming(new, timeout=30, upstream=old)

    # Now a crash after divergence: WAL beyond the fork and no clean shutdown.
    _split_brain(pair)
    kill_postmaster(host, old)
    div = check_divergence(host, old, new)
    assert div.node_state == "crashed" and div.needs_rewind, div.reason
    assert controldata(host, old)["Database cluster state"] == "in production"
    result = resync(host, old, new)
    assert result.method == "rewind", result.reason
    assert result.details["clean_shutdown"] == "single-user"
    wait_streaming(old, timeout=30, upstream=new)
    wait_for_catchup(old, new, timeout=20)
    assert rows(old) == [0, 1, 2, 3, 10]


def test_connection_errors_are_psycopg_free(shared_pair: PgPair) -> None:
    """The PgError subclasses carry the cause; the psycopg error is only chained."""
    node = dataclasses.replace(shared_pair.primary, port=1)
    with pytest.raises(PgUnreachable) as err:
        connect(node)
    assert isinstance(err.value.__cause__, psycopg.OperationalError)


def test_facts_of_a_running_server_that_answers_late_are_asked_again(
    shared_pair: PgPair,
) -> None:
    """A postmaster that runs but does not answer within the connect timeout (a loaded
    machine, a server starting up) is asked again while it runs, instead of failing the
    run that needed its facts: here it is SIGSTOPped past one whole connect timeout."""
    host, primary = shared_pair.host, shared_pair.primary
    standby = dataclasses.replace(shared_pair.standby, connect_timeout=2.0)
    pid = running_postmaster(host, standby)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    resume = threading.Timer(3.0, os.kill, (pid, signal.SIGCONT))
    resume.start()
    try:
        started = time.monotonic()
        div = check_divergence(host, standby, primary)
        waited = time.monotonic() - started
    finally:
        resume.cancel()
        os.kill(pid, signal.SIGCONT)
    assert waited >= 2.0, f"the first connection should have timed out ({waited:.1f}s)"
    assert not div.needs_rewind and not div.split_brain, div.reason
