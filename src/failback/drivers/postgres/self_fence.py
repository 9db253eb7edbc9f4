"""A primary that fences itself: what a site's monitor does when it is cut off from etcd.

Clients inside a site may reach its database without passing the edge, so fencing at
the edge cannot stop them. When the site's monitor node can no longer renew its etcd
lease, another site may be promoted once that lease ends: before then, this primary
must stop acknowledging writes. It does it here, without a run and without the journal
(both may live in the etcd it cannot reach):

- ``default_transaction_read_only = on`` by ALTER SYSTEM and a reload: every new
  transaction is read-only, and a write fails with "cannot execute INSERT in a
  read-only transaction";
- every client session is terminated, so none keeps a read-write transaction open
  across the change;
- a file ``failback.self-fenced`` in its data directory (holding when) marks the fence as
  failback's own, so the leader can tell it from a person's read-only switch: it lifts
  only its own (``unfence``), when the site was never failed over from after all.

The server keeps running: when the partition heals, the leader sees it as it is. If the
service failed over meanwhile, it is a stale primary, fenced on sight at the entry
points and failed back to later (``configure_standby`` drops the read-only line and the
mark when it makes the server a standby again; a rewind copies the other site's files).
If nobody failed over, the leader lifts the fence.

When SQL cannot reach the server (a login refused, the socket gone) but its machine
answers, the postmaster is stopped instead: a stopped primary acknowledges nothing either.

Limit, said plainly: a read-only *default* is a default. A client that explicitly runs
``SET default_transaction_read_only = off`` in a new session could still write; ordinary
applications do not. Stopping the server is stricter but leaves nothing for the leader
to see and fail back to after the heal.
"""

from __future__ import annotations

import os
import time
from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import kill_postmaster, running_postmaster, stop
from failback.errors import FailbackError
from failback.hosts import Host

MARK_FILE = "failback.self-fenced"
"""In the data directory: the server fenced itself (the file holds when). PostgreSQL's
ALTER SYSTEM refuses custom settings, so the mark is a file beside the data."""

FENCE_CONNECT_S = 1.0
"""A fence has the rest of the lease to act: a server that does not take a connection
within this is stopped through its machine instead."""


def fence(host: Host, node: PgNode) -> dict[str, Any]:
    """Make the server refuse writes now; what was done (never raises for a server that
    is already down or a standby: nothing to fence)."""
    try:
        with connect(node, timeout=FENCE_CONNECT_S) as conn:
            conn.autocommit = True
            (in_recovery,) = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if in_recovery:
                return {"fenced": False, "why": "a standby takes no writes"}
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            _wait_until_read_only(conn)
            ended = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchone()[0]
    except PgError as exc:
        return _stop_instead(host, node, exc.message)
    marked = _mark(host, node, when)
    return {
        "fenced": True, "how": "read-only", "sessions_ended": int(ended), "at": when,
        "marked": marked,
    }  # fmt: skip


def _mark(host: Host, node: PgNode, when: str) -> bool:
    """Leave the mark (False when the machine cannot take it: the fence holds anyway,
    and then a person, not the leader, lifts it)."""
    try:
        host.write_text(mark_path(node), when + "\n", owner=node.os_user, mode=0o600)
    except FailbackError:
        return False
    return True


def mark_path(node: PgNode) -> str:
    return os.path.join(node.pgdata, MARK_FILE)


def _wait_until_read_only(conn: Any) -> None:
    """The reload reaches new sessions once the postmaster handled it: wait (briefly)
    until a new snapshot of the setting says so in this session too."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        row = conn.execute("SHOW default_transaction_read_only").fetchone()
        if row and str(row[0]) == "on":
            return
        time.sleep(0.005)


def _stop_instead(host: Host, node: PgNode, why: str) -> dict[str, Any]:
    pid = running_postmaster(host, node)
    if pid is None:
        return {"fenced": False, "why": f"not running ({why})"}
    try:
        stop(host, node, mode="immediate", timeout=5.0)
        how = "stopped"
    except PgError:
        kill_postmaster(host, node)
        how = "killed"
    return {"fenced": True, "how": how, "why": why}


def unfence(host: Host, node: PgNode) -> bool:
    """Lift failback's own fence, never a person's read-only switch: True when lifted."""
    if not host.exists(mark_path(node)):
        return False
    with connect(node, timeout=2.0) as conn:
        conn.autocommit = True
        conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        conn.execute("SELECT pg_reload_conf()")
    host.remove(mark_path(node))
    return True
