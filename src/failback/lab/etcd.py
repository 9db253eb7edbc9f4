"""The netns lab's etcd members: started on their machines, checked, stopped.

Debian's ``etcd`` 3.4 (package ``etcd-server``, installed by scripts/setup.sh; its
system service stays off). Each member runs on its machine (started through that
machine's sshd, so it lives in the machine's namespace), in a session of its own, and
listens only on the machine's address. ``--pre-vote`` keeps a member that comes back
from a partition from deposing a healthy leader with the higher term it campaigned
for alone; revision-based auto-compaction keeps the history small.

Raft timings (``HEARTBEAT_MS``, ``ELECTION_MS``): when etcd's raft leader dies, no lease
can be renewed until the others elect a new one, which takes one to two election
timeouts (each follower waits a random time in ``[timeout, 2 x timeout)``). A monitor
that leads stops acting ``lease_ttl - safety_margin`` after the last renewal it *sent*
(2 s with the lab's 3 s lease), and that renewal can be a whole renewal period (0.6 s)
older than the raft leader's death. With etcd's default 1 s timeout the election
(1-2 s) plus that period does not always fit in 2 s: the leader then steps down for a
moment although nothing happened to it (measured on this machine, bench/etcd_election.py:
the survivors answered renewals again 1.2-2.2 s after the raft leader was SIGKILLed;
0.5-1.0 s with the timings below; docs/control-plane.md). The lab's members are one
machine apart, so a 500 ms election timeout (heartbeat 50 ms, etcd's advised ratio of
about ten) is still far above their round trip.

Restarting a member (``lab repair``, ``lab up`` of a stopped lab) runs the same
command: a member whose data directory exists ignores the ``--initial-cluster*``
flags and rejoins the cluster as the member it was.

Health is what etcd's ``GET /health`` says, asked from the orchestrator's namespace:
``true`` only when the member sees a leader and can serve a linearizable read, so a
member cut off from the others (or a partitioned one, which does not answer at all)
is not healthy.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from failback.coord import EtcdClient
from failback.errors import FailbackError
from failback.hosts import Host
from failback.lab import detached
from failback.lab.control_plane import COMPACTION_RETENTION, LabControlPlane, LabMember
from failback.lab.errors import LabError

ETCD = "/usr/bin/etcd"
_INSTALL_HINT = "apt-get install etcd-server (scripts/setup.sh installs it)"
HEALTH_TIMEOUT_S = 1.0
START_TIMEOUT_S = 10.0
HEALTHY_TIMEOUT_S = 30.0
HEARTBEAT_MS = 50
ELECTION_MS = 500
"""etcd's raft election timeout in the lab (default 1000 ms): an election must end, with
a renewal period to spare, well inside a leader's acting window (module docstring)."""


def require_available() -> None:
    """``LabError`` when this machine has no etcd to run."""
    if not os.access(ETCD, os.X_OK):
        raise LabError(
            f"{ETCD} is not installed: the lab's control plane needs etcd 3.4", hint=_INSTALL_HINT
        )


def _data_arg(member: LabMember) -> str:
    return f"--data-dir={member.data_dir}"


def etcd_argv(cp: LabControlPlane, name: str) -> list[str]:
    """The command of member ``name``: only command-line settings, only its address."""
    m = cp.members[name]
    return [
        ETCD,
        f"--name={name}",
        _data_arg(m),
        f"--listen-client-urls={m.client_url}",
        f"--advertise-client-urls={m.client_url}",
        f"--listen-peer-urls={m.peer_url}",
        f"--initial-advertise-peer-urls={m.peer_url}",
        f"--initial-cluster={cp.initial_cluster}",
        f"--initial-cluster-token={cp.token}",
        "--initial-cluster-state=new",
        "--pre-vote=true",
        f"--heartbeat-interval={HEARTBEAT_MS}",
        f"--election-timeout={ELECTION_MS}",
        "--auto-compaction-mode=revision",
        f"--auto-compaction-retention={COMPACTION_RETENTION}",
        "--snapshot-count=10000",
        "--logger=zap",
        "--log-outputs=stderr",
    ]


def member_pid(cp: LabControlPlane, name: str) -> int | None:
    """The PID of member ``name`` when it runs on its machine, else None."""
    m = cp.members[name]
    return detached.find(m.pid_file, netns=m.netns, needle=_data_arg(m))


def start(h: Host, cp: LabControlPlane, name: str, *, wait: bool = True) -> int:
    """Start member ``name`` on its machine ``h`` unless it runs; return its PID.

    ``wait``: until it listens on its client URL (not until the cluster is healthy:
    a member alone has no quorum; see ``wait_healthy``).
    """
    require_available()
    m = cp.members[name]
    pid = member_pid(cp, name)
    if pid is not None:
        return pid
    Path(m.dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    pid = detached.launch(
        h,
        etcd_argv(cp, name),
        log_file=m.log_file,
        pid_file=m.pid_file,
        cwd=m.dir,
        what=f"etcd member {name}",
    )
    if wait:
        _wait_listening(m, pid)
    return pid


def _wait_listening(m: LabMember, pid: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not detached.alive(pid):
            raise LabError(
                f"etcd member {m.name} exited at once: {detached.tail(m.log_file, 1)}",
                hint=f"see {m.log_file}",
            )
        try:
            httpx.get(f"{m.client_url}/version", timeout=HEALTH_TIMEOUT_S)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise LabError(
        f"etcd member {m.name} does not answer on {m.client_url} after {START_TIMEOUT_S:g} s",
        hint=f"see {m.log_file}",
    )


def healthy(m: LabMember, *, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """etcd's own ``GET /health`` of member ``m``: it has a leader and serves reads."""
    try:
        answer = httpx.get(f"{m.client_url}/health", timeout=timeout)
        return bool(answer.json().get("health") == "true")
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def health(cp: LabControlPlane, *, timeout: float = HEALTH_TIMEOUT_S) -> dict[str, bool]:
    """Every member's health, asked at once (a partitioned one costs ``timeout``)."""
    with ThreadPoolExecutor(max_workers=len(cp.members)) as pool:
        futures = {name: pool.submit(healthy, m, timeout=timeout) for name, m in cp.members.items()}
        return {name: future.result() for name, future in futures.items()}


def wait_healthy(
    cp: LabControlPlane, names: list[str] | None = None, *, timeout: float = HEALTHY_TIMEOUT_S
) -> None:
    """Wait until every member of ``names`` (default: all) is healthy and the cluster
    lists them all as started; ``LabError`` naming the laggards otherwise."""
    names = list(cp.members) if names is None else names
    deadline = time.monotonic() + timeout
    while True:
        seen = health(cp)
        sick = [name for name in names if not seen[name]]
        if not sick and _all_started(cp):
            return
        if time.monotonic() > deadline:
            why = "; ".join(
                f"{name}: {detached.tail(cp.members[name].log_file, 1) or 'no log'}"
                for name in sick
            )
            raise LabError(
                f"etcd members not healthy after {timeout:g} s: {', '.join(sick) or 'none'}"
                + (f" ({why})" if why else " (not every member has joined)"),
                hint=f"see the logs in {cp.dir}/*/etcd.log",
            )
        time.sleep(0.1)


def _all_started(cp: LabControlPlane) -> bool:
    try:
        with EtcdClient(cp.endpoints, connect_timeout=0.5, request_timeout=1.0) as client:
            members = client.members()
    except FailbackError:
        return False
    return {m.name for m in members} == set(cp.members)


def stop(cp: LabControlPlane, name: str, *, timeout: float = 10.0) -> str | None:
    """Stop member ``name`` (SIGTERM, then SIGKILL); None when it was not running."""
    m = cp.members[name]
    pid = member_pid(cp, name)
    if pid is None:
        return None
    return detached.terminate(pid, netns=m.netns, needle=_data_arg(m), timeout=timeout)


def kill(cp: LabControlPlane, name: str) -> int | None:
    """SIGKILL member ``name`` (a crash) and wait until it is gone; its PID, or None."""
    m = cp.members[name]
    pid = member_pid(cp, name)
    if pid is None:
        return None
    detached.kill(pid, netns=m.netns, needle=_data_arg(m))
    return pid


def describe(cp: LabControlPlane) -> dict[str, Any]:
    """Each member's place, PID and health (for ``lab status`` and ``lab up --json``)."""
    seen = health(cp)
    return {
        name: {
            "netns": m.netns,
            "address": m.address,
            "client_url": m.client_url,
            "pid": member_pid(cp, name),
            "healthy": seen[name],
            "data_dir": m.data_dir,
            "log_file": m.log_file,
        }
        for name, m in cp.members.items()
    }
