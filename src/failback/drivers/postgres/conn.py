"""Connections with errors a person can act on.

libpq reports every connection failure as one OperationalError whose text mixes
the cause with noise; here it becomes PgUnreachable / PgAuthFailed /
PgWrongDatabase / PgNotReady with a one-line message naming the site and address.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from failback.drivers.postgres.errors import (
    PgAuthFailed,
    PgError,
    PgNotReady,
    PgUnreachable,
    PgWrongDatabase,
)
from failback.drivers.postgres.node import PgNode

if TYPE_CHECKING:
    import psycopg

_AUTH_MARKERS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "fe_sendauth",
    "peer authentication failed",
)
_NOT_READY_MARKERS = (
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)
_DB_MISSING = re.compile(r'database "([^"]*)" does not exist')
_ROLE_MISSING = re.compile(r'role "([^"]*)" does not exist')


def _cause(text: str) -> str:
    """The interesting part of a libpq message: after 'failed:' and without FATAL:/hints."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if " failed: " in first:
        first = first.rsplit(" failed: ", 1)[1]
    first = re.sub(r"^(FATAL|ERROR):\s+", "", first.strip())
    return first.strip() or "unknown error"


def classify_connect_error(
    node: PgNode, exc: BaseException, *, user: str | None = None, dbname: str | None = None
) -> PgError:
    """Turn a psycopg connection error into the matching PgError (not raised)."""
    text = str(exc)
    lower = text.lower()
    cause = _cause(text)
    who = f"{node.site}: PostgreSQL at {node.address}"
    user = user or node.user
    if any(marker in lower for marker in _AUTH_MARKERS) or _ROLE_MISSING.search(text):
        return PgAuthFailed(
            f"{who} refused user {user!r} ({cause})",
            hint=(
                f"check the user and the password secret reference of the postgres component "
                f"for {node.site} (options.user / options.password) and pg_hba.conf on the server"
            ),
        )
    missing = _DB_MISSING.search(text)
    if missing:
        return PgWrongDatabase(
            f"{who} has no database {missing.group(1)!r}",
            hint="check options.dbname of the postgres component (or create the database)",
        )
    if any(marker in lower for marker in _NOT_READY_MARKERS):
        return PgNotReady(
            f"{who} is not accepting connections yet ({cause})",
            hint="it is starting, stopping or recovering; wait and retry",
        )
    if "connection refused" in lower:
        cause = "connection refused"
    elif "timeout expired" in lower or "timed out" in lower:
        cause = "connection timed out"
    return PgUnreachable(
        f"{who} is unreachable ({cause})",
        hint=(
            f"check that PostgreSQL runs on {node.site} and listens on {node.address} "
            f"(port, listen_addresses, firewall)"
        ),
    )


def connect(
    node: PgNode,
    *,
    dbname: str | None = None,
    autocommit: bool = True,
    timeout: float | None = None,
    **extra: Any,
) -> psycopg.Connection[Any]:
    """Open an admin connection to ``node``; failures raise a PgError subclass.

    The password is passed as a keyword, never inside a conninfo string that could be
    logged. ``timeout`` overrides the node's connect_timeout (libpq raises anything
    below 2 s to 2 s, note 11).
    """
    import psycopg  # here, not at the top: commands that never connect skip its import

    wait = timeout if timeout is not None else node.connect_timeout
    try:
        return psycopg.connect(
            host=node.host,
            port=node.port,
            user=node.user,
            password=node.password or None,
            dbname=dbname or node.dbname,
            connect_timeout=max(1, round(wait)),
            autocommit=autocommit,
            application_name="failback",
            **extra,
        )
    except psycopg.OperationalError as exc:
        raise classify_connect_error(node, exc, dbname=dbname) from exc


def query_one(node: PgNode, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """Run one query on a fresh connection and return its first row."""
    with connect(node) as conn:
        row = conn.execute(sql, params).fetchone()
    if row is None:
        raise PgError(f"{node.site}: query returned no row: {sql}")
    return tuple(row)


def current_timeline_sql() -> str:
    """Primary only: (current lsn, its WAL file name); the name's first 8 hex digits are
    the timeline, exact right after a promotion when pg_control still names the old one."""
    return "SELECT lsn, pg_walfile_name(lsn) FROM pg_current_wal_lsn() AS lsn"
