"""The processes of a network namespace: which they are, which one a process is in, kill all.

Processes started with ``ip netns exec`` or through a lab machine's sshd share the PID
namespace with the orchestrator; only their network namespace differs. So they are
found the way ``ip netns pids`` and ``ip netns identify`` find them, without running
``ip``: ``/proc/PID/ns/net`` and ``/run/netns/NAME`` are the same nsfs file (same
device and inode) exactly when the process lives in that namespace. Killing every
process of a namespace is how the lab makes a machine die at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from failback.lab.errors import LabError

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` pins each named namespace (a bind mount of its nsfs file)."""


def _nsfs_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:  # gone, a zombie (no namespaces left), or not ours to read
        return None
    return st.st_dev, st.st_ino


def pids(netns: str) -> list[int]:
    """Every live process whose network namespace is ``netns`` (as ``ip netns pids``)."""
    target = _nsfs_id(NETNS_DIR / netns)
    if target is None:
        return []
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _nsfs_id(f"/proc/{entry}/ns/net") == target:
            found.append(int(entry))
    return sorted(found)


def identify(pid: int) -> str | None:
    """The named namespace process ``pid`` lives in (as ``ip netns identify``), or None."""
    mine = _nsfs_id(f"/proc/{pid}/ns/net")
    if mine is None or not NETNS_DIR.is_dir():
        return None
    for name in sorted(os.listdir(NETNS_DIR)):
        if _nsfs_id(NETNS_DIR / name) == mine:
            return name
    return None


def _stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc/PID/stat; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields 3.. (the name may hold spaces)
    return fields[0], fields[19]


def _gone(pid: int, started: str | None) -> bool:
    """Dead, a zombie, or the pid now belongs to another process (another start time).

    A zombie runs nothing and holds no socket, and the one who must reap it may not be
    us (daemons are reparented to PID 1, which may never reap them).
    """
    now = _stat(pid)
    return now is None or now[0] in ("Z", "X") or now[1] != started


def kill_all(netns: str, *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process of ``netns`` and wait until they are gone; return their pids.

    Loops until the namespace has no process left, so a child forked while the first
    ones were killed (an sshd session starting) is killed too, then until every killed
    process is dead. Only processes seen in the namespace are signalled, never a
    remembered pid (it may have been reused). A missing namespace has no process.
    """
    me = os.getpid()
    killed: dict[int, str | None] = {}
    deadline = time.monotonic() + timeout
    while True:
        inside = [pid for pid in pids(netns) if pid != me]
        waiting = [pid for pid, started in killed.items() if not _gone(pid, started)]
        if not inside and not waiting:
            return sorted(killed)
        if time.monotonic() > deadline:
            raise LabError(
                f"processes of namespace {netns} survived SIGKILL: {sorted(inside + waiting)[:10]}",
                hint="a process stuck in the kernel (D state); see ps -o pid,stat,cmd",
            )
        for pid in inside:
            if pid not in killed:
                stat = _stat(pid)
                killed[pid] = None if stat is None else stat[1]
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
