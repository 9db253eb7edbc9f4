"""The ``sql`` declared check against a PostgreSQL site (``Capability.SQL``).

``failback.observe.checks`` runs every declared check; for ``sql`` it asks the
component's driver, so the observer holds no SQL and names no driver.
"""

from __future__ import annotations

from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.node import node_from_component


def run_sql(settings: Any, site: str, query: str, timeout: float = 2.0) -> str:
    """Run ``query`` on ``site``'s server; what it answered (first column of the first
    row). Raises (a PgError, or psycopg's) when the server refuses or the query fails,
    or takes longer than ``timeout`` (the server cancels it: a gate never hangs on it)."""
    node = node_from_component(settings, site)
    with connect(node, timeout=timeout) as conn:
        conn.execute(f"SET statement_timeout = {max(1, int(timeout * 1000))}")
        row = conn.execute(query).fetchone()
    return str(row[0]) if row else "no row"


class PostgresSql:
    """The driver's ``Capability.SQL`` method (mixed into ``PostgresDriver``)."""

    def run_sql(self, settings: Any, site: str, query: str, timeout: float) -> str:
        return run_sql(settings, site, query, timeout)
