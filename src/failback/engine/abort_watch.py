"""An abort requested from elsewhere stops the command a step is running, at once.

The executor looks for an abort request between steps and at every gate poll; a step
whose command runs for minutes (a re-clone's ``pg_basebackup``, a rewind, an
operator's script) would otherwise make ``failback abort`` wait that long. While a run
executes forward, this watcher polls the journal (its own connection: the executing
thread's belongs to that thread) and, once an abort is requested and the run has not
passed its point of no return, cancels the commands *that run's thread* has in flight
on every machine — locally and through the SSH agents, whole process groups — at
each poll until the step ends. The step then fails with ``CommandCancelled``, which
the executor takes as the abort it is, and the undo runs with commands nobody
cancels. The point-of-no-return step and every step after it are never watched (the
executor decides that in the run's own thread, before the step starts): an abort is
refused there, and a command cut half-way would leave a half-done promotion.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from failback.hosts import HostSet
from failback.store import Journal, open_journal

POLL_S = 0.25
"""How often the journal is asked; an abort stops a running command within this."""


class AbortWatch:
    """Watch ``run_id`` for an abort request while it executes in the calling thread."""

    def __init__(
        self,
        state_dir: Path,
        run_id: int,
        hosts: HostSet,
        may_cancel: Callable[[Journal], bool],
    ) -> None:
        self.state_dir = Path(state_dir)
        self.run_id = run_id
        self.hosts = hosts
        self.may_cancel = may_cancel
        """Asked (with the watcher's journal) before cancelling: False past the point of
        no return, where an abort is refused and the run carries on."""
        self.owner = threading.get_ident()
        self.cancelled = 0
        self._stop = threading.Event()
        self._cancelling = threading.Lock()
        """Held while cancelling; ``__exit__`` takes it, so nothing is cancelled once the
        step is over (the undo's commands run in the same thread)."""
        self._thread = threading.Thread(
            target=self._watch, name=f"abort-watch-{run_id}", daemon=True
        )

    def __enter__(self) -> AbortWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._cancelling:
            self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        journal: Journal | None = None
        try:
            while not self._stop.wait(POLL_S):
                if journal is None:
                    journal = open_journal(self.state_dir)
                try:
                    requested = bool(journal.run_value(self.run_id, "abort_requested"))
                    if not requested or not self.may_cancel(journal):
                        continue
                except Exception:  # a busy journal: ask again at the next poll
                    continue
                with self._cancelling:
                    if self._stop.is_set():
                        return  # the step is over: nothing of it to stop
                    # every poll: a command the step starts after this one is stopped too
                    self.cancelled += self.hosts.cancel_commands(self.owner)
        finally:
            if journal is not None:
                journal.close()
