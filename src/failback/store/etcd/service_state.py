"""Service state in etcd: ``ServiceStateStore`` (store/base.py).

One key per service (``services/<service>``: the active site, the data, when it was
written). Runs (``set_service_state``) and the monitor (``update_service_data``,
``mark_in_sync``) write it from different processes, on different machines; every one
of those writes goes through ``_edit_service_data``, the one read-modify-write, whose
commit holds only if the key is still the one read, so none can put back a value
another writer changed in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from failback.coord.etcd_types import Put
from failback.store.etcd.backend import EtcdBackend
from failback.store.etcd.keys import Change, Proof, Snapshot, dump, token


class EtcdServiceState(EtcdBackend):
    """``ServiceStateStore`` on the shared client."""

    def service_state(self, service: str) -> dict[str, Any] | None:
        key = self.keys.service(service)
        document = self._etcd.read([key]).doc(key)
        if document is None:
            return None
        data = dict(document["data"])
        data["active_site"] = document["active_site"]
        data["updated_at"] = document["updated_at"]
        return data

    def _edit_service_data(
        self, service: str, edit: Callable[[dict[str, Any]], bool], *, site: str,
        set_active: bool,
    ) -> bool:  # fmt: skip
        """The one read-modify-write of a service's state: read its data, let ``edit``
        change it (False: nothing to write), write it back if the key did not change
        meanwhile (else again, from a fresh read). ``site`` becomes the active site when
        ``set_active``, else only for a new record. Each write carries a fresh token,
        its proof when the answer is lost (``mark_in_sync`` must not answer False for
        a removal it made itself)."""
        key = self.keys.service(service)

        def decide(snapshot: Snapshot) -> Change[bool]:
            current = snapshot.doc(key)
            data = dict(current["data"]) if current is not None else {}
            if not edit(data):
                return Change(False)
            active = site if set_active or current is None else current["active_site"]
            write = token()
            document = {
                "active_site": active,
                "data": data,
                "updated_at": time.time(),
                "write": write,
            }
            return Change(True, [Put(key, dump(document))], Proof(key, write))

        return self._etcd.optimistic([key], decide, what=f"writing the state of {service!r}")

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
