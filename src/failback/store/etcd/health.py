"""Monitor health and history for the etcd store: ``HealthStore`` and ``HistoryStore``
(store/base.py), kept locally.

The probe results stay in the state directory's SQLite file, not in etcd, because of
what they are: one machine's view, rewritten every probe cycle (every second or so,
for every service). In etcd each of those writes would be a raft round and an fsync on
a quorum of members, and a revision kept until compaction, for data no other machine
needs: another machine's monitor probes for itself, and ``failback status`` and the API
show the health seen by the monitor of the machine they run on.

The health and lag history (``HistoryStore``) stays local for the same reasons, more
so: it is written by every process that observes (the monitor, the API server), and a
history kept in etcd would either cost a raft write per sample or need batching that
loses the newest minute with the process. Each machine's console shows what that
machine saw, which is what a person looking at one site's view of an incident wants;
the cost is that a console on another machine starts with its own, possibly shorter,
history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from failback.store.etcd.backend import EtcdBackend


class EtcdHealth(EtcdBackend):
    """``HealthStore`` delegated to the local SQLite store of the state directory."""

    def save_health(self, service: str, probes: dict[str, dict[str, Any]]) -> None:
        self._local.save_health(service, probes)

    def health(self, service: str) -> dict[str, dict[str, Any]]:
        return self._local.health(service)

    def record_history(
        self, service: str, samples: Sequence[dict[str, Any]], at: float | None = None
    ) -> None:
        self._local.record_history(service, samples, at)

    def history(self, service: str, since: float = 0.0) -> list[dict[str, Any]]:
        return self._local.history(service, since)
