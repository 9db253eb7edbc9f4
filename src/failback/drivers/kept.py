"""What an observer keeps between observations (the monitor's probes): open connections,
and answers recent enough to share.

A monitor observes every component every interval. A PostgreSQL observation on a fresh
connection spends most of its CPU on the connection itself (a TCP handshake, a SCRAM
exchange, a backend forked by the server) before its few queries: kept open, the next
observation of the same server sends only its queries. Everyone else (a run, ``failback
status``) observes on fresh connections, as before: a run must see the server as a new
client does, and a short-lived command has nothing to keep a connection for.

The owner (the monitor) makes one ``Kept`` for the process and puts it in scope
around each observation (``keeping``); a driver asks ``kept()`` for
it and, when there is one, takes an idle connection for its server or opens one and
gives it back when the observation succeeded. The pool is keyed by server, not by
probe: many services may share one database (bench/monitor_scale.py has hundreds on the
lab's pair), and one connection per probe would exhaust its ``max_connections``. The
drivers themselves decide what makes a kept connection unusable (a broken one is closed,
never given back), and how long they wait on one (``within``: a kept connection to a
server that stopped answering must fail the observation in the time a fresh connection
attempt would have, never hang it).

Answers: one server often answers for many components (an HAProxy's runtime API holds
the state of every server of a backend, and many services may share one backend).
``recent`` lets the observations of one server made within ``share_within`` seconds of
each other (the probe says how long: a small part of its interval) use one answer, and
an observation that asks while another's question is under way waits for that answer
instead of asking again. An answer is never older than ``share_within`` when it is
used, so what a probe reports is at most that much older than without sharing; failures
are never shared (each observation asks again, so a server that stopped answering is
seen by every probe as soon as without sharing); an answer its asker judges not worth
sharing (``share``: a database seen down, or its machine silent) is that asker's only.
``at_hand`` gives a recent answer without asking or waiting: the monitor's event loop
uses it to settle a probe without handing it to a thread (``monitor.scheduler``).

Values: what an observation derives from the topology before it asks anything (a
database's node, with its password secrets read from their files) is the same every
interval; ``reuse`` keeps it for a few seconds (so a changed secret is still seen soon).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

OPEN_PER_SERVER = 16
"""Connections the pool lets its observations open to one server (idle or in use). Probes
of one server are spread over their interval (``monitor.scheduler.phase``), so few
observe it at the same instant; when all are in use, the next observation waits for one
to come back (an observation on a kept connection takes about a millisecond) instead of
opening more. Without the bound, a burst (a monitor starting with hundreds of services on
one database, a loaded machine) opens a connection per probe: each costs the server a
backend and both sides an authentication, which makes the burst longer, until the server
refuses clients ("too many clients already") and healthy databases are recorded failed."""


class _Server:
    """One server's connections: the idle ones, and how many are open in all."""

    def __init__(self) -> None:
        self.idle: list[tuple[Any, Callable[[], None]]] = []
        self.open = 0


class Kept:
    """Connections per server key, and recent answers, shared by every thread of the owner.

    Thread-safe: a connection is handed to one observation at a time (taken out of the
    pool while in use). Closed (``close``): nothing is kept any more, and connections
    given back are closed at once, so a probe finishing after the monitor stopped
    leaves nothing open.
    """

    def __init__(self, open_per_server: int = OPEN_PER_SERVER) -> None:
        self.open_per_server = open_per_server
        self._servers: dict[Hashable, _Server] = {}
        self._lock = threading.Condition()
        self._closed = False
        self._watch = threading.Condition()
        self._deadlines: list[_Deadline] = []
        self._seq = itertools.count()
        self._watchdog: threading.Thread | None = None
        self._answers: dict[Hashable, _Answer] = {}
        self._values: dict[Hashable, tuple[object, Any, float]] = {}

    def take(self, key: Hashable, *, wait: float = 0.0) -> Any | None:
        """An idle connection to ``key``'s server (now the caller's), or None: the caller
        may open one, and then either gives it back (``give``) or says it is gone
        (``dropped``), whether or not opening it worked.

        When ``open_per_server`` connections are open and none is idle, waits up to
        ``wait`` seconds for one to be given back (or dropped); after that the caller may
        open one anyway, as if there were no pool.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            server = self._servers.setdefault(key, _Server())
            while True:
                if server.idle:
                    return server.idle.pop()[0]
                left = deadline - time.monotonic()
                if server.open < self.open_per_server or self._closed or left <= 0:
                    server.open += 1
                    return None
                self._lock.wait(left)

    def give(self, key: Hashable, conn: Any, close: Callable[[], None]) -> None:
        """Keep ``conn`` for the next observation of ``key``'s server; ``close`` closes it
        (called here when the pool is full or closed, else when the pool closes)."""
        with self._lock:
            server = self._servers.setdefault(key, _Server())
            keep = not self._closed and len(server.idle) < self.open_per_server
            if keep:
                server.idle.append((conn, close))
            else:
                server.open = max(0, server.open - 1)
            self._lock.notify()
        if not keep:
            _quietly(close)

    def dropped(self, key: Hashable) -> None:
        """A connection taken (or that ``take`` let the caller open) is gone: closed
        because it broke, or never opened."""
        with self._lock:
            server = self._servers.setdefault(key, _Server())
            server.open = max(0, server.open - 1)
            self._lock.notify()

    @contextmanager
    def within(self, fd: int, seconds: float) -> Iterator[None]:
        """The socket ``fd`` is shut down (not closed: it stays its owner's) if this block
        is still running after ``seconds``: whatever waits on it then fails at once (a
        client library reading its answer sees the connection end) instead of waiting
        for a server that stopped (SIGSTOP, a hung disk) or for TCP to give up on a
        partitioned link, which takes minutes.

        One watchdog thread serves every block of the pool: a thread per observation
        would cost about what keeping the connection saves.
        """
        entry = _Deadline(time.monotonic() + max(0.0, seconds), next(self._seq), fd)
        with self._watch:
            earliest = self._deadlines[0].at if self._deadlines else None
            heapq.heappush(self._deadlines, entry)
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch_deadlines, name="kept-deadlines", daemon=True
                )
                self._watchdog.start()
            elif earliest is None or entry.at < earliest:
                self._watch.notify()
        try:
            yield
        finally:
            with self._watch:  # after this, the watchdog never touches fd again
                entry.done = True

    def _watch_deadlines(self) -> None:
        with self._watch:
            while not self._closed:
                while self._deadlines and self._deadlines[0].done:
                    heapq.heappop(self._deadlines)
                if not self._deadlines:
                    self._watch.wait()
                    continue
                entry = self._deadlines[0]
                left = entry.at - time.monotonic()
                if left > 0:
                    self._watch.wait(left)
                    continue
                heapq.heappop(self._deadlines)
                entry.done = True
                _shut_down(entry.fd)  # under the lock: the owner has not closed fd yet

    def recent(
        self, key: Hashable, ask: Callable[[], T], *, share: Callable[[T], bool] | None = None
    ) -> T:
        """The answer to ``key``'s question if one was received within the scope's
        ``share_within`` seconds (or is being received now: waited for), else ``ask()``'s.

        ``ask`` raising is not remembered: the exception is this caller's, and the next
        caller asks again (a waiting caller asks itself). Nor is an answer for which
        ``share`` says False (a failure that ``ask`` reports instead of raising).
        """
        within = SHARE_WITHIN.get()
        if within <= 0:
            return ask()
        while True:
            with self._lock:
                answer = self._answers.get(key)
                if answer is None or (
                    answer.ready.is_set()
                    and (answer.failed or time.monotonic() - answer.at > within)
                ):
                    answer = self._answers[key] = _Answer()
                    mine = True
                else:
                    mine = False
            if mine:
                break
            answer.ready.wait()
            if not answer.failed and time.monotonic() - answer.at <= within:
                return answer.value  # type: ignore[no-any-return]
            # it failed, or was too slow to be recent: ask (or wait for someone else)
        try:
            value = ask()
        except BaseException:
            answer.failed = True
            answer.ready.set()
            raise
        if share is not None and not share(value):
            answer.failed = True  # this caller's only: the next one asks again
        else:
            answer.value, answer.at = value, time.monotonic()
        answer.ready.set()
        return value

    def at_hand(self, key: Hashable, within: float) -> Any | None:
        """The answer to ``key``'s question if one was received within ``within``
        seconds (as ``recent`` would share it), else None: never asks, never waits (an
        answer still being received is not at hand). Cheap enough for an event loop."""
        with self._lock:
            answer = self._answers.get(key)
        if (
            answer is None
            or not answer.ready.is_set()
            or answer.failed
            or time.monotonic() - answer.at > within
        ):
            return None
        return answer.value

    def reuse(
        self,
        key: Hashable,
        make: Callable[[], T],
        seconds: float,
        *,
        anchor: object,
        keep: Callable[[T], bool] | None = None,
    ) -> T:
        """``make()``'s value, made at most ``seconds`` ago for the same ``key`` and
        ``anchor`` (the object it is made from, compared by identity: a key may hold an
        ``id()``), else made now and kept unless ``keep`` says not to. ``make`` raising
        is not remembered."""
        value = self.reused(key, seconds, anchor=anchor)
        if value is not None:
            return value  # type: ignore[no-any-return]
        value = make()
        if keep is None or keep(value):
            with self._lock:
                self._values[key] = (anchor, value, time.monotonic())
        return value

    def reused(self, key: Hashable, seconds: float, *, anchor: object) -> Any | None:
        """What ``reuse`` would give without making anything, or None."""
        with self._lock:
            kept_value = self._values.get(key)
        if kept_value is None:
            return None
        made_from, value, at = kept_value
        if made_from is not anchor or time.monotonic() - at > seconds:
            return None
        return value

    def idle(self, key: Hashable) -> int:
        """How many idle connections are kept for ``key`` (for tests and figures)."""
        with self._lock:
            server = self._servers.get(key)
            return len(server.idle) if server else 0

    def open(self, key: Hashable) -> int:
        """How many connections to ``key``'s server are open, idle or in use."""
        with self._lock:
            server = self._servers.get(key)
            return server.open if server else 0

    def close(self) -> None:
        """Close every idle connection; connections given back later are closed too."""
        with self._lock:
            self._closed = True
            idle = [conn for server in self._servers.values() for conn in server.idle]
            for server in self._servers.values():
                server.open -= len(server.idle)
                server.idle = []
            self._lock.notify_all()
        with self._watch:
            self._watch.notify()
        for _, close in idle:
            _quietly(close)


T = TypeVar("T")


class _Answer:
    """One question's answer: ``ready`` once received (or failed)."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.value: Any = None
        self.at = 0.0
        self.failed = False


@dataclass(order=True)
class _Deadline:
    at: float
    seq: int
    fd: int = field(compare=False)
    done: bool = field(default=False, compare=False)


def _shut_down(fd: int) -> None:
    """Shut the socket behind ``fd`` down for both directions (through a duplicate
    descriptor, closed at once: ``fd`` itself stays open for its owner to close)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the peer, or not a socket any more
        pass


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # the server already dropped it: nothing to do
        close()


KEPT: ContextVar[Kept | None] = ContextVar("failback_kept", default=None)
SHARE_WITHIN: ContextVar[float] = ContextVar("failback_share_within", default=0.0)


@contextmanager
def keeping(kept: Kept | None, *, share_within: float = 0.0) -> Iterator[None]:
    """Observations made in this block may reuse (and keep) connections from ``kept``, and
    use answers other observations received within ``share_within`` seconds; ``None``
    changes nothing (every connection is fresh, every question asked)."""
    token = KEPT.set(kept)
    share = SHARE_WITHIN.set(share_within if kept is not None else 0.0)
    try:
        yield
    finally:
        SHARE_WITHIN.reset(share)
        KEPT.reset(token)


def kept() -> Kept | None:
    """What the observation under way may use, if its caller gave it anything."""
    return KEPT.get()


def answer_at_hand(key: Hashable) -> Any | None:
    """The answer to ``key``'s question that an observation in this scope would share
    (``Kept.at_hand`` within the scope's ``share_within``), or None: outside ``keeping``,
    with nothing to share, or none recent enough. Never asks, never waits."""
    pool = KEPT.get()
    within = SHARE_WITHIN.get()
    if pool is None or within <= 0:
        return None
    return pool.at_hand(key, within)
