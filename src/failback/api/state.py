"""What the app shares between requests: settings, the run launcher, the status cache.

SQLite connections belong to the thread that opened them, and FastAPI runs sync
endpoints in a pool of threads, so every request opens its own short-lived
``Journal`` (``with state.journal() as j``) instead of sharing one.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from failback.api.errors import ApiError
from failback.api.launcher import RunLauncher
from failback.api.redact import Redactor
from failback.api.settings import ApiSettings
from failback.config.journal import journal_for
from failback.engine.executor import Executor
from failback.errors import FailbackError, StateError
from failback.hosts import HostSet
from failback.observe.history import history_samples
from failback.status.document import service_status
from failback.store import Journal, RunRecord, open_journal

log = logging.getLogger("failback.api")

MAX_RUN_ID = 2**63 - 1
MAX_AGE_S = 1.0
"""How old a served observation may be (from the moment it started)."""


class StatusCache:
    """Observations shared by /status, the dashboards, the event streams and /metrics.

    Observing a service talks to every database and router, and can take seconds when
    one of them does not answer. So at most one observation is in progress at a time
    (single flight, in a thread of its own): a reader gets the cached document when it
    is at most ``max_age`` seconds old, else it joins the observation in progress
    (starting one when none is). Readers wait in the event loop (``aget``), without
    holding a worker thread, so any number of status requests never starve the threads that
    health, approve and abort run in; ``_lock`` guards only these fields, is never
    held while observing, and no mutating route takes it.
    """

    def __init__(self, observe: Callable[[], dict[str, Any]]) -> None:
        self._observe = observe
        self._lock = threading.Lock()
        self._doc: dict[str, Any] | None = None
        self._at = 0.0
        self._flight: Future[dict[str, Any]] | None = None

    def _claim(self, max_age: float) -> dict[str, Any] | Future[dict[str, Any]]:
        """The fresh cached document, or the observation in progress to wait for."""
        with self._lock:
            if self._doc is not None and time.monotonic() - self._at <= max_age:
                return self._doc
            if self._flight is None:
                flight: Future[dict[str, Any]] = Future()
                flight.set_running_or_notify_cancel()  # a waiter's cancel cannot cancel it
                self._flight = flight
                threading.Thread(
                    target=self._refresh, args=(flight,), name="failback-status", daemon=True
                ).start()
            return self._flight

    def _refresh(self, flight: Future[dict[str, Any]]) -> None:
        started = time.monotonic()
        try:
            doc = self._observe()
        except BaseException as exc:  # every waiter gets it; the next reader tries again
            with self._lock:
                self._flight = None
            flight.set_exception(exc)
            return
        with self._lock:
            self._doc, self._at, self._flight = doc, started, None
        flight.set_result(doc)

    async def aget(self, max_age: float = MAX_AGE_S) -> dict[str, Any]:
        """The cached document, or the one of the observation in progress, awaited in the
        event loop: no worker thread is held while waiting."""
        got = self._claim(max_age)
        if isinstance(got, Future):
            return await asyncio.shield(asyncio.wrap_future(got))
        return got


class AppState:
    """The one object the app keeps: see the module docstring."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.topology = settings.topology
        self.hosts: HostSet = settings.topology.open_hosts()
        """The machines status observes through, kept connected between requests."""
        journal_for(settings.topology, settings.state_dir).close()  # bind the directory
        self.launcher = RunLauncher(settings.state_dir)
        self.status = StatusCache(self.observe_all)
        self.redactor = Redactor.for_topology(settings.topology, settings.token)
        self._history_failing = False

    @contextmanager
    def journal(self) -> Iterator[Journal]:
        journal = open_journal(self.settings.state_dir)
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
        """The run ``run_id``, or 404 (also for ids no run can have: SQLite integers
        are 64-bit, and a larger one would be an OverflowError, a 500)."""
        if not 1 <= run_id <= MAX_RUN_ID:
            raise ApiError(404, f"no run {run_id}", hint="GET /api/v1/runs lists the runs")
        try:
            return journal.get_run(run_id)
        except StateError as exc:  # its message names the state directory: not for clients
            raise ApiError(404, f"no run {run_id}", hint=exc.hint) from None

    def observe_all(self) -> dict[str, Any]:
        """Every service's status (see failback.status.document), observed now.

        ``observed_at`` is when the observation began: everything that happened before
        it is in the document (a client waiting for a change can rely on that).
        """
        started = time.time()
        with self.journal() as journal:
            executor = Executor(journal)
            services = [
                service_status(self.hosts, self.topology, name, journal, executor)
                for name in self.topology.services
            ]
            self._record_history(journal, services)
        return {"services": services, "observed_at": started}

    def _record_history(self, journal: Journal, services: list[dict[str, Any]]) -> None:
        """Add what was just observed to the console's history (observe/history.py): the
        server observes for its viewers anyway, so the charts have data without a
        monitor. It goes to the history file, never to the journal (looking never writes
        the journal: store/sqlite/history.py). A failed write costs the status nothing:
        it is logged (once until a write succeeds again), not raised."""
        try:
            for doc in services:
                journal.record_history(doc["service"], history_samples(doc["components"]))
        except (FailbackError, sqlite3.Error) as exc:
            if not self._history_failing:
                log.warning("the health history is not recorded: %s", exc)
            self._history_failing = True
        else:
            self._history_failing = False


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.failback
    return state
