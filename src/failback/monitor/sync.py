"""Synchronous replication managed by the monitor: zero-loss while it can, relaxed when not.

The primary names the standbys it waits for in ``synchronous_standby_names``. The
value is symmetric (``ANY 1 ("dc1", "dc2")``): a primary is never its own standby,
so the same value is right whichever site is primary, even where pg_rewind or
pg_basebackup copied postgresql.auto.conf from the other site.

A standby must not carry the setting into a promotion: a promoted standby whose old
primary is dead would wait for it forever and take no write. So the monitor clears
it on the standby (``prepare_for_promotion``) and sets it on the primary only.
ALTER SYSTEM and pg_reload_conf write no WAL, so neither waits for a standby.
"""

from __future__ import annotations

import time

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.node import PgNode

SYNC_STATES = ("sync", "quorum")


def zero_loss_value(sites: list[str]) -> str:
    """``ANY 1 ("dc1", "dc2")``: wait for one standby, whichever site is primary."""
    names = ", ".join('"' + s.replace('"', '""') + '"' for s in sites)
    return f"ANY 1 ({names})"


def read_names(node: PgNode, *, timeout: float = 2.0) -> str:
    with connect(node, timeout=timeout) as conn:
        row = conn.execute("SHOW synchronous_standby_names").fetchone()
    return str(row[0]) if row else ""


def set_names(node: PgNode, value: str, *, timeout: float = 2.0) -> None:
    """ALTER SYSTEM + reload, then wait (briefly) until the server uses the new value.

    Setting '' explicitly (not RESET) so that a value in postgresql.conf cannot come back.
    """
    with connect(node, timeout=timeout) as conn:
        literal = "'" + value.replace("'", "''") + "'"
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = {literal}")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            row = conn.execute("SHOW synchronous_standby_names").fetchone()
            if row and str(row[0]) == value:
                return
            time.sleep(0.01)


def prepare_for_promotion(node: PgNode) -> bool:
    """Clear the setting on a standby about to be promoted; False when it cannot be reached."""
    try:
        if read_names(node, timeout=2.0):
            set_names(node, "")
    except Exception:
        return False
    return True
