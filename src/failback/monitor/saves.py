"""Every service's heartbeat and health, written to the journal together.

Each service's reconcile makes, once a second, what ``failback status`` reads: its
monitor document (heartbeat, decisions) and its probes' health records. Written by
each service's own thread, that was two journal transactions per service per second,
each fsynced (SQLite ``synchronous=FULL``): a monitor of hundreds of services spent
its time queueing for the journal's write lock, and writers waiting past the busy
timeout failed ("database is locked"). Here the reconciles hand their saves over, and
one thread writes all the pending ones in one transaction (``store.batched``) a few
times a second. A newer save of a service replaces one not yet written: the journal
gets the latest heartbeat and health, as before, at most ``FLUSH_S`` later.
"""

from __future__ import annotations

import threading
from typing import Any

from failback.store import Journal, batched

FLUSH_S = 0.25
"""How often pending saves are written (a heartbeat reaches the journal at most this much
later than when its reconcile made it; ``failback status`` ages one out after seconds)."""


class Saves:
    """Saves handed over by the services' reconciles, written together by ``flush``."""

    def __init__(self) -> None:
        self._pending: dict[
            str, tuple[str, dict[str, Any], dict[str, dict[str, Any]], list[dict[str, Any]]]
        ] = {}
        self._lock = threading.Lock()

    def put(
        self,
        service: str,
        default_site: str,
        data: dict[str, Any],
        records: dict[str, dict[str, Any]],
        samples: list[dict[str, Any]] | None = None,
    ) -> None:
        """Save ``data`` (``update_service_data``), ``records`` (``save_health``) and the
        history ``samples`` (``record_history``) of ``service`` with the next flush;
        replaces its save not yet written (the history keeps the worst sample of each
        interval, so a sample replaced within one flush loses nothing it would keep)."""
        with self._lock:
            self._pending[service] = (default_site, data, records, samples or [])

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self, journal: Journal) -> int:
        """Write every pending save in one batch; how many services were saved. When the
        batch fails, its saves stay pending (unless a newer one came meanwhile) and the
        error is raised."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            with batched(journal):
                for service, (site, data, records, samples) in pending.items():
                    journal.update_service_data(service, site, **data)
                    journal.save_health(service, records)
                    journal.record_history(service, samples)
        except Exception:
            with self._lock:
                for service, save in pending.items():
                    self._pending.setdefault(service, save)
            raise
        return len(pending)
