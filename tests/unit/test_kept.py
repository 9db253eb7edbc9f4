"""What the monitor's probes keep between observations (``failback.drivers.kept``): idle
connections per server, answers shared for a moment, and the deadline that ends a wait
on a kept connection (real sockets; the drivers' own tests use real servers)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from failback.drivers.kept import Kept, answer_at_hand, keeping, kept


def test_connections_are_kept_per_server_and_closed_with_the_pool() -> None:
    closed: list[str] = []
    pool = Kept(open_per_server=2)
    assert pool.take("a") is None and pool.open("a") == 1, "the caller may open one"
    pool.give("a", "a1", lambda: closed.append("a1"))
    assert pool.take("b") is None
    pool.dropped("b")  # opening it failed
    assert pool.open("b") == 0
    assert pool.take("a") == "a1" and pool.idle("a") == 0 and pool.open("a") == 1
    pool.give("a", "a1", lambda: closed.append("a1"))
    pool.close()
    assert closed == ["a1"] and pool.open("a") == 0
    pool.give("a", "late", lambda: closed.append("late"))
    assert closed[-1] == "late", "a connection given back after close is closed at once"


def test_at_the_bound_an_observation_waits_for_a_connection_instead_of_opening_one() -> None:
    pool = Kept(open_per_server=2)
    assert pool.take("a") is None and pool.take("a") is None  # both opened, both in use
    started = time.monotonic()
    assert pool.take("a", wait=0.2) is None, "after the wait: open one anyway"
    assert time.monotonic() - started >= 0.19
    assert pool.open("a") == 3
    pool.dropped("a")
    # one comes back while a third observation waits: it gets that one
    threading.Timer(0.1, lambda: pool.give("a", "back", lambda: None)).start()
    started = time.monotonic()
    assert pool.take("a", wait=5.0) == "back"
    assert time.monotonic() - started < 4
    assert pool.open("a") == 2
    pool.close()


def test_keeping_puts_the_pool_in_scope_and_none_changes_nothing() -> None:
    pool = Kept()
    assert kept() is None
    with keeping(pool, share_within=0.5):
        assert kept() is pool
        with keeping(None, share_within=0.5):
            assert kept() is None
        assert kept() is pool
    assert kept() is None


def test_an_answer_is_shared_within_share_within_only() -> None:
    pool = Kept()
    asked: list[float] = []

    def ask() -> int:
        asked.append(time.monotonic())
        return len(asked)

    assert pool.recent("k", ask) == 1, "outside keeping nothing is shared"
    assert pool.recent("k", ask) == 2
    with keeping(pool, share_within=0.3):
        first = pool.recent("k", ask)
        assert pool.recent("k", ask) == first
        time.sleep(0.35)
        assert pool.recent("k", ask) == first + 1, "an answer older than share_within"


def test_callers_asking_while_an_answer_is_under_way_wait_for_it() -> None:
    pool = Kept()
    release = threading.Event()
    calls: list[int] = []

    def slow() -> str:
        calls.append(1)
        release.wait(5)
        return "answer"

    got: list[str] = []

    def caller() -> None:
        with keeping(pool, share_within=10.0):
            got.append(pool.recent("k", slow))

    threads = [threading.Thread(target=caller) for _ in range(5)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert got == ["answer"] * 5
    assert len(calls) == 1


def test_a_failure_is_not_shared() -> None:
    pool = Kept()
    answers = iter([OSError("refused"), "up"])

    def ask() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with keeping(pool, share_within=10.0):
        with pytest.raises(OSError, match="refused"):
            pool.recent("k", ask)
        assert pool.recent("k", ask) == "up"


def test_an_answer_its_asker_judges_a_failure_is_not_shared() -> None:
    """``share`` says which answers are worth sharing: a database seen down is reported
    (not raised), and must be asked again by the next probe, never reused."""
    pool = Kept()
    answers = iter(["down", "down", "up"])
    asked: list[str] = []

    def ask() -> str:
        asked.append(next(answers))
        return asked[-1]

    def worth(answer: str) -> bool:
        return answer == "up"

    with keeping(pool, share_within=10.0):
        assert pool.recent("k", ask, share=worth) == "down"
        assert pool.at_hand("k", 10.0) is None
        assert pool.recent("k", ask, share=worth) == "down", "asked again"
        assert pool.recent("k", ask, share=worth) == "up"
        assert pool.recent("k", ask, share=worth) == "up"
    assert asked == ["down", "down", "up"]


def test_an_answer_at_hand_is_a_recent_success_and_never_an_answer_under_way() -> None:
    pool = Kept()
    assert pool.at_hand("k", 10.0) is None, "nothing asked yet"
    assert answer_at_hand("k") is None, "outside keeping"
    release, asked = threading.Event(), threading.Event()

    def slow() -> str:
        asked.set()
        release.wait(5)
        return "answer"

    def caller() -> None:
        with keeping(pool, share_within=10.0):
            pool.recent("k", slow)

    asking = threading.Thread(target=caller)
    asking.start()
    try:
        assert asked.wait(5)
        assert pool.at_hand("k", 10.0) is None, "an answer under way is not waited for"
    finally:
        release.set()
        asking.join(5)
    assert pool.at_hand("k", 10.0) == "answer"
    with keeping(pool, share_within=10.0):
        assert answer_at_hand("k") == "answer"
    with keeping(pool, share_within=0.0):
        assert answer_at_hand("k") is None, "share_within 0: nothing is shared"
    time.sleep(0.05)
    assert pool.at_hand("k", 0.01) is None, "older than asked for"
    with keeping(pool, share_within=10.0), pytest.raises(OSError):
        pool.recent("e", lambda: (_ for _ in ()).throw(OSError("refused")))
    assert pool.at_hand("e", 10.0) is None, "a failure is never at hand"


def test_a_value_is_reused_for_its_anchor_for_a_while_only() -> None:
    """What an observation derives from the topology (a database's node) is reused for
    a few seconds, for the same settings object only, and not when ``keep`` refuses it."""
    pool = Kept()
    made: list[int] = []

    def make() -> int:
        made.append(len(made) + 1)
        return made[-1]

    settings, other = object(), object()
    assert pool.reused("node", 10.0, anchor=settings) is None
    assert pool.reuse("node", make, 10.0, anchor=settings) == 1
    assert pool.reuse("node", make, 10.0, anchor=settings) == 1
    assert pool.reused("node", 10.0, anchor=settings) == 1
    assert pool.reused("node", 10.0, anchor=other) is None, "another object, same key"
    assert pool.reuse("node", make, 10.0, anchor=other) == 2
    time.sleep(0.05)
    assert pool.reuse("node", make, 0.01, anchor=other) == 3, "too old: made again"
    assert pool.reuse("bad", make, 10.0, anchor=settings, keep=lambda v: False) == 4
    assert pool.reused("bad", 10.0, anchor=settings) is None, "not worth keeping"


def test_a_wait_that_outlives_its_deadline_sees_its_socket_shut_down() -> None:
    """The peer never answers (a stopped server): the blocked read ends at the deadline,
    and the descriptor stays open for its owner to close."""
    pool = Kept()
    ours, peer = socket.socketpair()
    try:
        started = time.monotonic()
        with pool.within(ours.fileno(), 0.3):
            data = ours.recv(10)  # blocks until the watchdog shuts the socket down
        took = time.monotonic() - started
        assert data == b""
        assert 0.25 <= took < 5, took
        assert ours.fileno() >= 0, "shut down, not closed"
        # a block that ends in time is left alone
        quick, other = socket.socketpair()
        with pool.within(quick.fileno(), 0.2):
            other.sendall(b"x")
            assert quick.recv(1) == b"x"
        time.sleep(0.3)
        other.sendall(b"y")
        assert quick.recv(1) == b"y"
        quick.close()
        other.close()
    finally:
        pool.close()
        ours.close()
        peer.close()
