"""What every concern of the etcd store shares: the client, the key layout, the writer
(keys.py), the state directory, and the local SQLite store that keeps the health."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from failback.coord.etcd import EtcdClient
from failback.coord.etcd_types import Compare
from failback.errors import StateError
from failback.store.etcd.keys import Keys, Writer, number
from failback.store.sqlite import SqliteStore


class EtcdBackend:
    """One client to etcd, under one prefix; the concerns (runs, events, service state,
    health) are subclasses that share it, as the SQLite ones share a connection.

    Like a ``SqliteStore``, one object serves one thread: the health it keeps locally
    is an SQLite connection, which SQLite ties to the thread that opened it.
    """

    def __init__(self, state_dir: Path, client: EtcdClient, prefix: str) -> None:
        """Use ``client`` for everything under ``<prefix>/store/``; the object owns the
        client from now on (``close`` closes it).

        The state directory is still needed: run process locks live beside the store,
        and the monitor's probe results are kept there (see ``EtcdHealth``).
        """
        self.keys = Keys(prefix)
        self.client = client
        self._etcd = Writer(client, remember=self.keys.run_owned)
        self.state_dir = Path(state_dir)
        self._local = SqliteStore(self.state_dir)

    def fence_writes(self, fence: Sequence[Compare]) -> None:
        """From now on every write of this object also requires ``fence`` to hold (the
        leader's key and lease, ``LeaderElection.fence``); one that does not raises
        ``LeadershipLost`` and writes nothing."""
        self._etcd.fence = tuple(fence)

    @property
    def where(self) -> str:
        """Where this store is, for messages (as SQLite names its state directory)."""
        return f"etcd under {self.keys.root}"

    def close(self) -> None:
        """Close the client and the local health store; the object is unusable afterwards."""
        try:
            self.client.close()
        finally:
            self._local.close()

    def _last_run_id(self) -> int:
        return number(self._etcd.read([self.keys.run_seq]).text(self.keys.run_seq))

    def _last_event_id(self) -> int:
        return number(self._etcd.read([self.keys.event_seq]).text(self.keys.event_seq))

    def _no_run(self, run_id: int) -> StateError:
        """The error for a run id naming no run, with the range of ids as a hint."""
        last = self._last_run_id()
        hint = (
            f"run ids here go from 1 to {last}; `failback runs` lists them"
            if last
            else "no run exists under this etcd prefix yet"
        )
        return StateError(f"no run {run_id} in {self.where}", hint=hint)
