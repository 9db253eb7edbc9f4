"""Health and replication-lag history in SQLite: ``HistoryStore`` (store/base.py).

Written by whichever process observes (the monitor with each save, the API server with
each status observation it makes for its viewers), read by the console's charts.

It lives in a file of its own beside the journal, ``history.sqlite3``, not in the
journal: looking never writes the journal (the API's reads leave it exactly as it was,
tests/integration/test_read_only.py), and a sample a second must not queue for the
journal's write lock behind, or ahead of, a run's fsynced transitions. Losing the last
samples in a power cut costs nothing, so this file is not fsynced at each commit
(``synchronous=NORMAL`` in WAL mode).

Bounded and downsampled here, in one place, so that no writer can make it grow: one row
per component, site and ``HISTORY_BUCKET_S`` bucket, keeping the worst of the samples
that fall in it (unhealthy wins, the largest lag wins) so that a short outage is never
averaged away; rows older than ``HISTORY_KEEP_S`` are deleted as new ones are written.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from failback.errors import StateError
from failback.store.base import HISTORY_BUCKET_S, HISTORY_KEEP_S
from failback.store.sqlite.database import SqliteDatabase

HISTORY_FILE = "history.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS health_history (
    service TEXT NOT NULL,
    component TEXT NOT NULL,
    site TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    at REAL NOT NULL,
    healthy INTEGER NOT NULL,
    role TEXT NOT NULL,
    lag_bytes INTEGER,
    lag_seconds REAL,
    samples INTEGER NOT NULL,
    PRIMARY KEY (service, component, site, bucket)
);
CREATE INDEX IF NOT EXISTS health_history_bucket ON health_history (service, bucket);
"""

_MERGE = """
INSERT INTO health_history
  (service, component, site, bucket, at, healthy, role, lag_bytes, lag_seconds, samples)
VALUES (?,?,?,?,?,?,?,?,?,1)
ON CONFLICT (service, component, site, bucket) DO UPDATE SET
  at = excluded.at,
  healthy = min(healthy, excluded.healthy),
  role = CASE WHEN excluded.healthy <= healthy THEN excluded.role ELSE role END,
  lag_bytes = CASE WHEN lag_bytes IS NULL THEN excluded.lag_bytes
                   WHEN excluded.lag_bytes IS NULL THEN lag_bytes
                   ELSE max(lag_bytes, excluded.lag_bytes) END,
  lag_seconds = CASE WHEN lag_seconds IS NULL THEN excluded.lag_seconds
                     WHEN excluded.lag_seconds IS NULL THEN lag_seconds
                     ELSE max(lag_seconds, excluded.lag_seconds) END,
  samples = samples + 1
"""


class HistoryFile:
    """The history file of one state directory, on one connection (one per thread, like
    the journal's)."""

    def __init__(self, state_dir: Path) -> None:
        path = Path(state_dir) / HISTORY_FILE
        try:
            if not path.exists():
                path.touch(mode=0o600)  # before SQLite opens it: its -wal/-shm get its mode
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StateError(
                f"cannot open the health history {path}: {exc}",
                hint="it can be deleted: only the console's charts read it",
            ) from exc
        self._db.row_factory = sqlite3.Row

    def record(self, service: str, samples: Sequence[dict[str, Any]], at: float | None) -> None:
        if not samples:
            return
        now = time.time() if at is None else at
        bucket = int(now // HISTORY_BUCKET_S)
        rows = [
            (
                service,
                str(s["component"]),
                str(s["site"]),
                bucket,
                now,
                1 if s.get("healthy") else 0,
                str(s.get("role") or "unknown"),
                _int(s.get("lag_bytes")),
                _float(s.get("lag_seconds")),
            )
            for s in samples
        ]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(_MERGE, rows)
            self._db.execute(
                "DELETE FROM health_history WHERE service = ? AND bucket < ?",
                (service, int((now - HISTORY_KEEP_S) // HISTORY_BUCKET_S)),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def read(self, service: str, since: float) -> list[dict[str, Any]]:
        rows = self._db.execute(
            """SELECT component, site, bucket, at, healthy, role, lag_bytes, lag_seconds, samples
               FROM health_history WHERE service = ? AND bucket >= ?
               ORDER BY bucket, component, site""",
            (service, int(since // HISTORY_BUCKET_S)),
        ).fetchall()
        return [
            {
                "component": r["component"],
                "site": r["site"],
                "at": float(r["bucket"] * HISTORY_BUCKET_S),
                "last_at": r["at"],
                "healthy": bool(r["healthy"]),
                "role": r["role"],
                "lag_bytes": r["lag_bytes"],
                "lag_seconds": r["lag_seconds"],
                "samples": r["samples"],
            }
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()


class SqliteHistory(SqliteDatabase):
    """``HistoryStore`` of the SQLite store: the history file, opened when first used."""

    _history: HistoryFile | None = None

    def _history_file(self) -> HistoryFile:
        if self._history is None:
            self._history = HistoryFile(self.state_dir)
        return self._history

    def record_history(
        self, service: str, samples: Sequence[dict[str, Any]], at: float | None = None
    ) -> None:
        """Merge ``samples`` into the bucket of ``at`` (now by default), in one transaction."""
        self._history_file().record(service, samples, at)

    def history(self, service: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The service's samples from ``since`` on, oldest first (none before any was
        recorded: the file is not created for a read)."""
        if self._history is None and not (self.state_dir / HISTORY_FILE).exists():
            return []
        return self._history_file().read(service, since)

    def close(self) -> None:
        try:
            if self._history is not None:
                self._history.close()
                self._history = None
        finally:
            super().close()


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
