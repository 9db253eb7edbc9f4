"""Where runs, events, service state and monitor health are kept.

``base.py`` is the interface (one Protocol per concern, and the records); each backend
is a package beside it (``sqlite/``, the embedded default; ``etcd/``, a control plane
shared by machines). Callers import from here only, so adding a backend touches no
caller. This package sits below the engine: it knows the run state machine
(model/states.py) and the etcd client (coord/), nothing of engine, drivers, plan,
monitor or interfaces.
"""

from __future__ import annotations

from failback.store.base import (
    EventStore,
    HealthStore,
    RunRecord,
    RunStore,
    ServiceStateStore,
    StepRecord,
    Store,
)
from failback.store.etcd import EtcdStore
from failback.store.sqlite import SqliteStore

Journal = SqliteStore
"""The store callers open for a state directory: ``Journal(state_dir)``. The name is the
one the code and the docs have always used for "the journal of a state directory"; it is
the SQLite backend because that is the only one. When a second backend exists, this
becomes the function that picks one from the settings (callers keep calling it)."""

__all__ = [
    "EtcdStore",
    "EventStore",
    "HealthStore",
    "Journal",
    "RunRecord",
    "RunStore",
    "ServiceStateStore",
    "SqliteStore",
    "StepRecord",
    "Store",
]
