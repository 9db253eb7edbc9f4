"""Monitor health for the etcd store: ``HealthStore`` (store/base.py), kept locally.

The probe results stay in the state directory's SQLite file, not in etcd, because of
what they are: one machine's view, rewritten every probe cycle (every second or so,
for every service). In etcd each of those writes would be a raft round and an fsync on
a quorum of members, and a revision kept until compaction, for data no other machine
needs: another machine's monitor probes for itself, and ``failback status`` and the API
show the health seen by the monitor of the machine they run on.
"""

from __future__ import annotations

from typing import Any

from failback.store.etcd.backend import EtcdBackend


class EtcdHealth(EtcdBackend):
    """``HealthStore`` delegated to the local SQLite store of the state directory."""

    def save_health(self, service: str, probes: dict[str, dict[str, Any]]) -> None:
        self._local.save_health(service, probes)

    def health(self, service: str) -> dict[str, dict[str, Any]]:
        return self._local.health(service)
