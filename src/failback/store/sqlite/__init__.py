"""The SQLite backend of the store (the embedded default): one file in the state
directory, one module per concern, one object (``SqliteStore``) composing them."""

from __future__ import annotations

from failback.store.sqlite.database import FILE_NAME, SCHEMA
from failback.store.sqlite.events import SqliteEvents
from failback.store.sqlite.health import SqliteHealth
from failback.store.sqlite.history import SqliteHistory
from failback.store.sqlite.runs import SqliteRuns
from failback.store.sqlite.service_state import SqliteServiceState


class SqliteStore(SqliteRuns, SqliteEvents, SqliteServiceState, SqliteHealth, SqliteHistory):
    """The store of one state directory, in ``journal.sqlite3``: every concern of
    ``Store`` (store/base.py) on one connection, so a transaction may span them."""


__all__ = ["FILE_NAME", "SCHEMA", "SqliteStore"]
