"""Health and replication-lag history in SQLite: ``HistoryStore`` (store/base.py).

Written by whichever process observes (the monitor each save, the API server each
status observation it makes for its viewers), read by the console's charts. Bounded
and downsampled here, in one place, so that no writer can make it grow: one row per
component, site and ``BUCKET_S`` bucket, keeping the worst of the samples that fall
in it (unhealthy wins, the largest lag wins) so that a short outage is never averaged
away; rows older than ``KEEP_S`` are deleted as new buckets are written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from failback.store.base import HISTORY_BUCKET_S, HISTORY_KEEP_S
from failback.store.sqlite.database import SqliteDatabase

BUCKET_S = HISTORY_BUCKET_S
KEEP_S = HISTORY_KEEP_S


class SqliteHistory(SqliteDatabase):
    """``HistoryStore`` on the shared connection."""

    def record_history(
        self, service: str, samples: Sequence[dict[str, Any]], at: float | None = None
    ) -> None:
        """Merge ``samples`` (``component``, ``site``, ``healthy``, ``role``, ``lag_bytes``,
        ``lag_seconds``) into the bucket of ``at`` (now by default), in one transaction."""
        if not samples:
            return
        now = time.time() if at is None else at
        bucket = int(now // BUCKET_S)
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
        with self._transaction() as db:
            db.executemany(
                """INSERT INTO health_history
                   (service, component, site, bucket, at, healthy, role, lag_bytes,
                    lag_seconds, samples)
                   VALUES (?,?,?,?,?,?,?,?,?,1)
                   ON CONFLICT (service, component, site, bucket) DO UPDATE SET
                     at = excluded.at,
                     healthy = min(healthy, excluded.healthy),
                     role = CASE WHEN excluded.healthy <= healthy THEN excluded.role
                                 ELSE role END,
                     lag_bytes = CASE WHEN lag_bytes IS NULL THEN excluded.lag_bytes
                                      WHEN excluded.lag_bytes IS NULL THEN lag_bytes
                                      ELSE max(lag_bytes, excluded.lag_bytes) END,
                     lag_seconds = CASE WHEN lag_seconds IS NULL THEN excluded.lag_seconds
                                        WHEN excluded.lag_seconds IS NULL THEN lag_seconds
                                        ELSE max(lag_seconds, excluded.lag_seconds) END,
                     samples = samples + 1""",
                rows,
            )
            db.execute(
                "DELETE FROM health_history WHERE service = ? AND bucket < ?",
                (service, int((now - KEEP_S) // BUCKET_S)),
            )

    def history(self, service: str, since: float = 0.0) -> list[dict[str, Any]]:
        """The service's samples from ``since`` on, oldest first."""
        rows = self._db.execute(
            """SELECT component, site, bucket, at, healthy, role, lag_bytes, lag_seconds, samples
               FROM health_history WHERE service = ? AND bucket >= ?
               ORDER BY bucket, component, site""",
            (service, int(since // BUCKET_S)),
        ).fetchall()
        return [
            {
                "component": r["component"],
                "site": r["site"],
                "at": float(r["bucket"] * BUCKET_S),
                "last_at": r["at"],
                "healthy": bool(r["healthy"]),
                "role": r["role"],
                "lag_bytes": r["lag_bytes"],
                "lag_seconds": r["lag_seconds"],
                "samples": r["samples"],
            }
            for r in rows
        ]


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
