"""The event log in SQLite: ``EventStore`` (store/base.py). Ids come from
AUTOINCREMENT, so they only grow: a reader keeping the last id it saw
(``events_since``) misses none and sees none twice."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from failback.store.sqlite.database import SqliteDatabase


class SqliteEvents(SqliteDatabase):
    """``EventStore`` on the shared connection."""

    def add_event(
        self,
        kind: str,
        message: str,
        *,
        run_id: int | None = None,
        service: str | None = None,
        step_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO events (run_id, service, ts, kind, step_id, message, data_json)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    run_id,
                    service,
                    time.time(),
                    kind,
                    step_id,
                    message,
                    json.dumps(data) if data else None,
                ),
            )

    def events(self, *, run_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if run_id is None:
            rows = self._db.execute(
                "SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?", (run_id, limit)
            ).fetchall()
        return [_event_from_row(row) for row in reversed(rows)]

    def events_since(self, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        ).fetchall()
        return [_event_from_row(row) for row in rows]

    def last_event_id(self) -> int:
        row = self._db.execute("SELECT max(id) AS m FROM events").fetchone()
        return int(row["m"] or 0)


def _event_from_row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "run_id": row["run_id"],
        "service": row["service"],
        "ts": row["ts"],
        "kind": row["kind"],
        "step": row["step_id"],
        "message": row["message"],
        "data": json.loads(row["data_json"]) if row["data_json"] else None,
    }
