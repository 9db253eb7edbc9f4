"""What the app shares between requests: settings, the run launcher, the status cache.

SQLite connections belong to the thread that opened them, and FastAPI runs sync
endpoints in a pool of threads, so every request opens its own short-lived
``Journal`` (``with state.journal() as j``) instead of sharing one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from failback.api.errors import ApiError
from failback.api.launcher import RunLauncher
from failback.api.redact import Redactor
from failback.api.settings import ApiSettings
from failback.engine.executor import Executor
from failback.engine.journal import Journal, RunRecord
from failback.errors import StateError
from failback.hosts import Host, LocalHost


class StatusCache:
    """Observations shared by the dashboards, the event streams and /metrics.

    Observing a service talks to every database and router; several viewers asking
    within ``max_age`` seconds get the same observation instead of one each.
    """

    def __init__(self, state: AppState) -> None:
        self._state = state
        self._lock = threading.Lock()
        self._doc: dict[str, Any] | None = None
        self._at = 0.0

    def get(self, max_age: float = 0.0) -> dict[str, Any]:
        with self._lock:
            if self._doc is not None and time.monotonic() - self._at <= max_age:
                return self._doc
            self._doc = self._state.observe_all()
            self._at = time.monotonic()
            return self._doc


class AppState:
    """The one object the app keeps: see the module docstring."""

    def __init__(self, settings: ApiSettings, host: Host | None = None) -> None:
        self.settings = settings
        self.topology = settings.topology
        self.host: Host = host or LocalHost()
        self.launcher = RunLauncher(settings.state_dir, self.host)
        self.status = StatusCache(self)
        self.redactor = Redactor.for_topology(settings.topology, settings.token)

    @contextmanager
    def journal(self) -> Iterator[Journal]:
        journal = Journal(self.settings.state_dir)
        try:
            yield journal
        finally:
            journal.close()

    def require_service(self, name: str) -> Any:
        """The service ``name``, or 404 naming the ones there are."""
        if name not in self.topology.services:
            known = ", ".join(self.topology.services) or "none"
            raise ApiError(404, f"no service {name!r}", hint=f"known services: {known}")
        return self.topology.services[name]

    def require_run(self, journal: Journal, run_id: int) -> RunRecord:
        """The run ``run_id``, or 404 with the journal's hint."""
        try:
            return journal.get_run(run_id)
        except StateError as exc:
            raise ApiError(404, exc.message, hint=exc.hint) from None

    def observe_all(self) -> dict[str, Any]:
        """Every service's status (see failback.engine.status), observed now."""
        from failback.engine.status import service_status

        with self.journal() as journal:
            executor = Executor(journal, host=self.host)
            services = [
                service_status(self.host, self.topology, name, journal, executor)
                for name in self.topology.services
            ]
        return {"services": services, "observed_at": time.time()}


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.failback
    return state
