"""Synchronous replication of a PostgreSQL pair: what the monitor's zero-loss mode uses.

The primary names the standbys it waits for in ``synchronous_standby_names``. The
value is symmetric (``ANY 1 ("dc1", "dc2")``): a primary is never its own standby,
so the same value is right whichever site is primary, even where pg_rewind or
pg_basebackup copied postgresql.auto.conf from the other site.

A standby must not carry the setting into a promotion: a promoted standby whose old
primary is dead would wait for it forever and take no write. So the monitor clears
it on the standby (``clear_before_promotion``) and sets it on the primary only.
ALTER SYSTEM and pg_reload_conf write no WAL, so neither waits for a standby.

The monitor reaches these through the driver (``Capability.SYNCHRONOUS_REPLICATION``);
it never speaks SQL itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.node import PgNode, node_from_component

SYNC_STATES = ("sync", "quorum")
"""``pg_stat_replication.sync_state`` values of a standby the primary waits for."""


def zero_loss_value(sites: list[str]) -> str:
    """``ANY 1 ("dc1", "dc2")``: wait for one standby, whichever site is primary."""
    names = ", ".join('"' + s.replace('"', '""') + '"' for s in sites)
    return f"ANY 1 ({names})"


def read_names(node: PgNode, *, timeout: float = 2.0) -> str:
    """The server's ``synchronous_standby_names`` ('' when it waits for no standby)."""
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


def clear_before_promotion(node: PgNode) -> bool:
    """Clear the setting on a standby about to be promoted; False when it cannot be reached."""
    try:
        if read_names(node, timeout=2.0):
            set_names(node, "")
    except Exception:
        return False
    return True


def _replicas(primary_data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(primary_data.get("replicas") or [])


def standby_streams(primary_data: Mapping[str, Any], standby_site: str) -> bool:
    """The primary's walsender for ``standby_site`` is ``streaming`` (caught up), from the
    primary's observation (standbys connect with their site as application_name)."""
    return any(
        r.get("application_name") == standby_site and r.get("state") == "streaming"
        for r in _replicas(primary_data)
    )


def synchronous_standbys(primary_data: Mapping[str, Any]) -> list[str]:
    """The standbys a primary waits for right now, as its observation reports them."""
    return [
        str(r["application_name"])
        for r in _replicas(primary_data)
        if r.get("sync_state") in SYNC_STATES and r.get("state") == "streaming"
    ]


class PostgresSyncMode:
    """The driver's ``Capability.SYNCHRONOUS_REPLICATION`` methods (mixed into
    ``PostgresDriver``; see ``failback.drivers.base.Driver`` for the contract)."""

    def zero_loss_setting(self, settings: Any) -> str:
        return zero_loss_value(list(settings.sites))

    def synchronous_setting(
        self, settings: Any, site: str, observed: Mapping[str, Any] | None = None
    ) -> str:
        seen = None if observed is None else observed.get("synchronous_standby_names")
        if seen is not None:
            return str(seen)
        return read_names(node_from_component(settings, site))

    def set_synchronous_setting(self, settings: Any, site: str, value: str) -> None:
        set_names(node_from_component(settings, site), value)

    def clear_synchronous_setting(self, settings: Any, site: str) -> bool:
        return clear_before_promotion(node_from_component(settings, site))

    def standby_streams(self, primary_data: Mapping[str, Any], standby_site: str) -> bool:
        return standby_streams(primary_data, standby_site)

    def synchronous_standbys(self, primary_data: Mapping[str, Any]) -> list[str]:
        return synchronous_standbys(primary_data)
