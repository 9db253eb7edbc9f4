"""Which lock a run holds: the service's, or a lock of its own kind.

Every run that moves or fences a service holds the service's lock, so two of them can
never act on it at once. A drill (``failback drill``) moves nothing: it copies the
standby and works on the copy. If it held the service's lock, a failover could not
start while it runs — a rehearsal would delay the real thing. So a drill holds a lock
of its own (one drill of a service at a time), and the service's lock stays free for
the monitor and for people.
"""

from __future__ import annotations

DRILL_KIND = "drill"
"""The kind of run of a disaster-recovery drill."""

_OWN_LOCK = {DRILL_KIND: "drill"}
"""Kinds of run that hold a lock of their own instead of the service's."""


def run_lock(service: str, kind: str) -> str:
    """The name of the lock a run of ``kind`` holds: ``app`` (the service's) or
    ``app:drill``. A ``:`` cannot appear in a service name (``model/fields.NAME_PATTERN``), so no
    service's own lock can ever be mistaken for another kind's."""
    own = _OWN_LOCK.get(kind)
    return service if own is None else f"{service}:{own}"
