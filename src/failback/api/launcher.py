"""Runs started through the API execute in a background thread each.

The request returns 202 with the run id at once; the thread opens its own journal
(SQLite connections are per thread) and drives the run with the same ``Executor``
the CLI uses. The executor holds the run's flock while it works, so ``status`` and
``resume`` see the run as executing; if the thread (or the whole server) dies, the
kernel frees the lock and the run shows as ``interrupted``, resumable (promise 3).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from failback.engine.executor import Executor
from failback.errors import FailbackError
from failback.store import open_journal

log = logging.getLogger("failback.api")


class RunLauncher:
    """Starts and tracks the threads that execute runs."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._threads: dict[int, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(self, run_id: int) -> None:
        """Execute (or continue) ``run_id`` in a new thread until it ends or waits."""
        thread = threading.Thread(
            target=self._execute, args=(run_id,), name=f"failback-run-{run_id}", daemon=True
        )
        with self._lock:
            self._threads = {k: t for k, t in self._threads.items() if t.is_alive()}
            self._threads[run_id] = thread
        thread.start()

    def executing(self) -> list[int]:
        """Ids of the runs a thread of this process executes now."""
        with self._lock:
            return sorted(k for k, t in self._threads.items() if t.is_alive())

    def join(self, timeout: float | None = None) -> None:
        """Wait for the run threads (bounded): used when the server stops."""
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)

    def _execute(self, run_id: int) -> None:
        journal = open_journal(self.state_dir)
        try:
            outcome = Executor(journal).execute(run_id)
            log.info("run %s: %s%s", run_id, outcome.status, _tail(outcome.error))
        except FailbackError as exc:
            log.warning("run %s not executed: %s", run_id, exc.message)
        except Exception:
            log.exception("run %s: the thread executing it died; it can be resumed", run_id)
        finally:
            journal.close()


def _tail(error: str | None) -> str:
    return f" ({error})" if error else ""
