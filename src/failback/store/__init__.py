"""Where runs, events, service state and monitor health are kept.

``base.py`` is the interface (one Protocol per concern, and the records); each backend
is a package beside it (``sqlite/``, the embedded default; ``etcd/``, a control plane
shared by machines). Callers import from here only, so adding a backend touches no
caller. This package sits below the engine: it knows the run state machine
(model/states.py) and the etcd client (coord/), nothing of engine, drivers, plan,
monitor or interfaces.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from failback.store.base import (
    EventStore,
    HealthStore,
    HistoryStore,
    RunRecord,
    RunStore,
    ServiceStateStore,
    StepRecord,
    Store,
)
from failback.store.binding import EtcdBinding, bind, open_journal, read_binding
from failback.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from failback.store.etcd import EtcdStore


def __getattr__(name: str) -> Any:
    """``EtcdStore`` on first use: a command without a control plane (most of them, every
    time the CLI starts) never imports the etcd client."""
    if name == "EtcdStore":
        from failback.store.etcd import EtcdStore

        return EtcdStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batched(journal: Store) -> AbstractContextManager[None]:
    """A block whose writes commit together where the backend can (SQLite: one
    transaction, ``SqliteDatabase.batch``); elsewhere each write is its own, as without it."""
    return journal.batch() if isinstance(journal, SqliteStore) else nullcontext()


Journal = Store
"""The journal of a state directory, as callers name its type (the name the code and the
docs have always used); ``open_journal(state_dir)`` opens it in the backend the directory
is bound to (store/binding.py)."""

__all__ = [
    "EtcdBinding",
    "EtcdStore",
    "EventStore",
    "HealthStore",
    "HistoryStore",
    "Journal",
    "RunRecord",
    "RunStore",
    "ServiceStateStore",
    "SqliteStore",
    "StepRecord",
    "Store",
    "batched",
    "bind",
    "open_journal",
    "read_binding",
]
