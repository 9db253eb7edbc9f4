"""The SQLite file of a state directory: where it is, who may read it, its schema, and
the one way to write to it (a short IMMEDIATE transaction).

Promise 3 of the design rests here: a run survives the death of the process that runs
it because every transition is committed (WAL, ``synchronous=FULL``: fsynced) before the
next action starts. Each write is its own short transaction so that a reader
(``failback status`` in another terminal) never waits on a long one.

The file name and the schema are those of every state directory written so far:
changing either would orphan existing runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from failback.errors import StateError

FILE_NAME = "journal.sqlite3"
"""The store's file in the state directory (and its ``-wal``/``-shm`` companions)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    plan_json TEXT NOT NULL,
    topology_path TEXT NOT NULL,
    topology_text TEXT NOT NULL,
    options_json TEXT NOT NULL DEFAULT '{}',
    values_json TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    hint TEXT,
    pid INTEGER,
    report_json TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    output TEXT,
    error TEXT,
    undo_status TEXT,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER,
    service TEXT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    step_id TEXT,
    message TEXT NOT NULL,
    data_json TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    step_id TEXT,
    name TEXT NOT NULL,
    value REAL,
    unit TEXT,
    note TEXT,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    service TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    acquired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    approved_by TEXT,
    ts REAL NOT NULL,
    PRIMARY KEY (run_id, step_id)
);
CREATE TABLE IF NOT EXISTS service_state (
    service TEXT PRIMARY KEY,
    active_site TEXT NOT NULL,
    data_json TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS diverged (
    run_id INTEGER PRIMARY KEY,
    capture_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health (
    service TEXT NOT NULL,
    probe TEXT NOT NULL,
    data_json TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (service, probe)
);
"""

_WHERE_HINT = "choose a writable place with --state-dir or state_dir: in the topology file"


class SqliteDatabase:
    """One connection to the store file of a state directory.

    The concerns (runs, events, service state, health) are subclasses that share it:
    the writes that span tables (a run and its lock) stay one transaction.
    """

    FILE_NAME = FILE_NAME

    def __init__(self, state_dir: Path) -> None:
        """Open (creating it if needed) the store in ``state_dir``.

        The store holds command outputs, topology copies and errors: only the user
        that runs failback may read it. A state directory failback creates is 0700; the
        file is created 0600 before SQLite opens it (SQLite gives its -wal and -shm
        files the database file's mode), and an older, more open one is tightened.
        An existing directory keeps its mode: it may be a shared place chosen by a person.
        """
        self.state_dir = Path(state_dir)
        try:
            if not self.state_dir.is_dir():
                self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.state_dir.chmod(0o700)  # whatever the umask
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {self.state_dir}: {exc.strerror}",
                hint=_WHERE_HINT,
            ) from exc
        self.path = self.state_dir / FILE_NAME
        try:
            if not self.path.exists():
                self.path.touch(mode=0o600)
        except OSError as exc:
            raise StateError(
                f"cannot create the journal {self.path}: {exc.strerror}", hint=_WHERE_HINT
            ) from exc
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
            except OSError:  # absent, or not ours to change: opening it says what matters
                continue
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"cannot open the journal {self.path}: {exc}",
                hint="is it a failback state directory? Use --state-dir to point elsewhere",
            ) from exc
        self._db.row_factory = sqlite3.Row
        self._batching = False

    def fence_writes(self, fence: Sequence[Any]) -> None:
        """One machine, one writer: there is no leader whose lease could fence writes."""
        del fence

    def close(self) -> None:
        """Close the connection (a thread or a worker opens its own)."""
        self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes made in this block on this connection commit together, in one
        transaction: one fsync instead of one each, and the write lock taken once. For the
        monitor's saves of every service's heartbeat and health each second: hundreds of
        fsynced transactions a second from as many threads were the journal's limit
        (writers queueing past busy_timeout: "database is locked"). A write that fails
        fails the whole block."""
        if self._batching:
            yield
            return
        with self._transaction():
            self._batching = True
            try:
                yield
            finally:
                self._batching = False

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: it takes the write lock before its first read, so a
        read-modify-write inside it cannot interleave with another writer's, and
        writers queue (busy_timeout) instead of failing half-way. Inside ``batch`` it is
        part of the batch's transaction."""
        if self._batching:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
