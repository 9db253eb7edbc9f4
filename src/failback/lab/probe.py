"""A write probe: a client inserting an increasing id every few ms through the router.

It is how the demo, the tests and the benchmarks measure what a client lived
through: which commits were acknowledged, which failed, the longest gap between
two acknowledged commits, and, at the end, which acknowledged ids are missing
from the database (lost writes). It measures from the outside; the run's own
measurements come from the engine.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

TABLE = "failback_probe"


@dataclass
class ProbeStats:
    acknowledged: list[tuple[int, float]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    started: dict[int, float] = field(default_factory=dict)
    """When each attempt (id) began, its reconnection included: an acknowledgement long
    after its start was held somewhere (a pool's PAUSE, a server connection not made yet)."""
    connects: list[tuple[float, float, str]] = field(default_factory=list)
    """Every reconnection: start, end, ``ok`` or the error's first line (a client stuck in
    a connection attempt shows here, not among the INSERTs)."""

    def acked_ids(self, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [i for i, t in self.acknowledged if since <= t <= until]

    def longest_gap(self, since: float = 0.0, until: float = float("inf")) -> float:
        """Longest time between two consecutive acknowledged commits in the window."""
        times = [t for _, t in self.acknowledged if since <= t <= until]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def outage_across(self, start: float, end: float) -> float:
        """Longest gap between acknowledged commits from ``start`` until the first commit
        after ``end``: how long the client could not write across an event (a crash and
        the failover that followed it), whatever the exact moment the crash took effect."""
        after = [t for _, t in self.acknowledged if t > end]
        if not after:
            return float("nan")
        return self.longest_gap(since=start, until=min(after))

    def failures_between(self, since: float, until: float = float("inf")) -> int:
        return sum(1 for t, _ in self.failures if since <= t <= until)


class WriteProbe:
    """Inserts ``id`` = 1, 2, 3... every ``interval`` seconds in a background thread."""

    def __init__(self, dsn: str, *, interval: float = 0.01) -> None:
        self.dsn = dsn
        self.interval = interval
        self.stats = ProbeStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="write-probe", daemon=True)
        self._next_id = 1
        self._lock = threading.Lock()

    def prepare(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY,"
                " at timestamptz NOT NULL DEFAULT clock_timestamp())"
            )
            row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()
        self._next_id = int(row[0]) + 1 if row else 1

    def start(self) -> WriteProbe:
        self.prepare()
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Started and not stopped yet (``stop`` gives the figures either way)."""
        return self._thread.is_alive()

    def stop(self) -> ProbeStats:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.stats

    def _connect(self) -> psycopg.Connection[Any]:
        # prepare_threshold=None: no server-side prepared statements, so the probe also
        # works through a transaction-pooling PgBouncer (notes: PgBouncer 1.18)
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=2, prepare_threshold=None)

    def _reconnect(self) -> psycopg.Connection[Any]:
        """``_connect``, its start, end and outcome kept in ``stats.connects``."""
        began = time.time()
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            with self._lock:
                self.stats.connects.append((began, time.time(), _first_line(exc)))
            raise
        with self._lock:
            self.stats.connects.append((began, time.time(), "ok"))
        return conn

    def _loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            started = time.monotonic()
            ident = self._next_id
            with self._lock:
                self.stats.started[ident] = time.time()
            try:
                if conn is None or conn.closed:
                    conn = self._reconnect()
                conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (ident,))
                with self._lock:
                    self.stats.acknowledged.append((ident, time.time()))
                self._next_id += 1
            except psycopg.Error as exc:
                with self._lock:
                    self.stats.failures.append((time.time(), _first_line(exc)))
                # the outcome of that insert is unknown: never reuse its id
                self._next_id += 1
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
            pause = self.interval - (time.monotonic() - started)
            if pause > 0:
                self._stop.wait(pause)
        if conn is not None:
            conn.close()

    def missing(self, ids: list[int], *, dsn: str | None = None) -> list[int]:
        """Acknowledged ids that are not in the table (read through ``dsn``)."""
        if not ids:
            return []
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    dsn or self.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
                ) as conn:
                    rows = conn.execute(
                        f"SELECT id FROM {TABLE} WHERE id = ANY(%s)", (ids,)
                    ).fetchall()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        present = {int(r[0]) for r in rows}
        return [i for i in ids if i not in present]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
