"""Opening a topology's journal: the state directory is bound to the topology's control
plane (or to its SQLite file when it has none) before it is opened, so that every
process that later knows only the directory opens the same journal."""

from __future__ import annotations

from pathlib import Path

from failback.config.models import Topology
from failback.store import Store, bind, open_journal


def journal_for(topology: Topology, state_dir: Path | None = None) -> Store:
    """The journal of ``state_dir`` (default: the topology's), bound to the topology's
    control plane first: the etcd store with one, the SQLite file without."""
    directory = Path(state_dir or topology.state_dir)
    control_plane = topology.control_plane
    bind(directory, None if control_plane is None else control_plane.binding())
    return open_journal(directory)
