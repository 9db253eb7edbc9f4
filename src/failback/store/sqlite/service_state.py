"""Service state in SQLite: ``ServiceStateStore`` (store/base.py).

Runs (``set_service_state``) and the monitor (``update_service_data``,
``mark_in_sync``) write the same row from different processes; every one of those
writes goes through ``_edit_service_data``, the one read-modify-write, so none can
put back a value another writer changed in between.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from failback.store.sqlite.database import SqliteDatabase


class SqliteServiceState(SqliteDatabase):
    """``ServiceStateStore`` on the shared connection."""

    def service_state(self, service: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT * FROM service_state WHERE service = ?", (service,)
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row["data_json"])
        data["active_site"] = row["active_site"]
        data["updated_at"] = row["updated_at"]
        return data

    def _edit_service_data(
        self, service: str, edit: Callable[[dict[str, Any]], bool], *, site: str,
        set_active: bool,
    ) -> bool:  # fmt: skip
        """The one read-modify-write of a service's state: read its data, let ``edit``
        change it (False: nothing to write), write it back, in one IMMEDIATE transaction,
        so a concurrent writer of other keys is never overwritten with a stale read.
        ``site`` becomes the active site when ``set_active``, else only for a new row."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT data_json FROM service_state WHERE service = ?", (service,)
            ).fetchone()
            data = json.loads(row["data_json"]) if row is not None else {}
            if not edit(data):
                return False
            active = " active_site = excluded.active_site," if set_active else ""
            db.execute(
                "INSERT INTO service_state (service, active_site, data_json, updated_at)"
                f" VALUES (?,?,?,?) ON CONFLICT(service) DO UPDATE SET{active}"
                " data_json = excluded.data_json, updated_at = excluded.updated_at",
                (service, site, json.dumps(data), time.time()),
            )
            return True

    def set_service_state(self, service: str, active_site: str, **data: Any) -> None:
        self._edit_service_data(service, _merging(data), site=active_site, set_active=True)

    def update_service_data(self, service: str, default_site: str, **data: Any) -> None:
        self._edit_service_data(service, _merging(data), site=default_site, set_active=False)

    def mark_in_sync(self, service: str, site: str) -> bool:
        def drop(data: dict[str, Any]) -> bool:
            pending = list(data.get("needs_resync") or [])
            if site not in pending:
                return False
            data["needs_resync"] = [s for s in pending if s != site]
            return True

        return self._edit_service_data(service, drop, site=site, set_active=False)


def _merging(data: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """An edit for ``_edit_service_data`` that sets ``data``'s keys (always writes)."""

    def merge(current: dict[str, Any]) -> bool:
        current.update(data)
        return True

    return merge
