"""Monitor health in SQLite: ``HealthStore`` (store/base.py). Written by the monitor,
read by ``failback status`` and the API in other processes."""

from __future__ import annotations

import json
import time
from typing import Any

from failback.store.sqlite.database import SqliteDatabase


class SqliteHealth(SqliteDatabase):
    """``HealthStore`` on the shared connection."""

    def save_health(self, service: str, probes: dict[str, dict[str, Any]]) -> None:
        """Delete and insert in one transaction: readers see the old set or the new."""
        now = time.time()
        with self._transaction() as db:
            db.execute("DELETE FROM health WHERE service = ?", (service,))
            db.executemany(
                "INSERT INTO health (service, probe, data_json, updated_at) VALUES (?,?,?,?)",
                [(service, name, json.dumps(data), now) for name, data in probes.items()],
            )

    def health(self, service: str) -> dict[str, dict[str, Any]]:
        rows = self._db.execute(
            "SELECT probe, data_json, updated_at FROM health WHERE service = ? ORDER BY probe",
            (service,),
        ).fetchall()
        return {
            row["probe"]: {**json.loads(row["data_json"]), "saved_at": row["updated_at"]}
            for row in rows
        }
