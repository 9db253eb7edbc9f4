"""Read what an old primary committed after the fork, before a resync erases it.

The fork is where the new primary's timeline began (its timeline history file, as the
rewind decision reads it). If the old primary wrote no WAL past it, nothing diverged.
Otherwise the old primary is stopped, started where nobody can reach it (no TCP
listener, a private socket directory, no archiving), and failback's logical slots
(``capture_slots.py``) are decoded with ``pg_logical_slot_peek_changes``: peek, not
get, so that a capture interrupted by a crash reads the same changes again. Then it is
stopped again: the resync that follows rewinds or re-clones it.

Exact, or it says why not: every database must have a slot, and every slot must stand
at or before the fork (a slot created or advanced after the standby fell behind would
skip commits), with its WAL still there. Only commits whose record starts at or after
the fork are reported (``diverged.decode``): crash recovery moves a slot back to its
last checkpointed position, so it may replay commits the new primary has too.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from failback.drivers.postgres.capture_slots import SLOT_PREFIX, slot_dirs
from failback.drivers.postgres.diverged import WAL2JSON_OPTIONS, decode
from failback.drivers.postgres.divergence import check_divergence
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.lsn import format_lsn, parse_lsn
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import (
    pgdata_ok,
    run_pg,
    running_postmaster,
    start,
    stop,
    wait_stale_postmaster,
)
from failback.errors import FailbackError
from failback.hosts.base import Host

ISOLATED_HBA = (
    "# failback: the isolated start of a capture (private socket directory)\nlocal all all trust\n"
)


@dataclass
class Capture:
    """The diverged transactions of one old primary, or why they could not be read."""

    site: str
    captured: bool
    reason: str
    since_lsn: str | None = None
    transactions: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)
    unkeyed: list[dict[str, str]] = field(default_factory=list)
    """Rows of tables without a key, which the WAL cannot name: table, op, database."""
    without_rows: list[dict[str, Any]] = field(default_factory=list)
    """Committed transactions with no row decoding can show (DDL...): xid, time, LSN."""
    databases: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What ``run show`` carries: counts, not rows."""
        return {
            "site": self.site,
            "captured": self.captured,
            "reason": self.reason,
            "since_lsn": self.since_lsn,
            "transactions": self.transactions,
            "rows": len(self.changes),
            "unkeyed": self.unkeyed,
            "without_rows": self.without_rows,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "databases": self.databases, "changes": self.changes}


def capture_diverged(host: Host, node: PgNode, source: PgNode, *, timeout: float) -> Capture:
    """Capture ``node``'s commits after ``source``'s fork (``captured`` False with the
    reason when that cannot be done exactly). Leaves ``node`` stopped when it decoded."""

    def impossible(reason: str) -> Capture:
        return Capture(site=node.site, captured=False, reason=reason)

    try:
        if not pgdata_ok(host, node):
            return impossible(f"{node.site} has no data directory at {node.pgdata}")
        # a capture killed half-way left the node running where nobody (not even the
        # divergence check) can connect: stop it, the check reads a stopped node's files
        stop_isolated(host, node, timeout=timeout)
        div = check_divergence(host, node, source)
    except FailbackError as exc:
        return impossible(f"{node.site} cannot be read: {exc.message}")
    if not div.same_system:
        return impossible(div.reason)
    fork = div.fork_lsn
    since = None if fork is None else format_lsn(fork)
    if not div.needs_rewind:
        return Capture(
            site=node.site, captured=True, since_lsn=since,
            reason=f"nothing diverged: {div.reason}",
        )  # fmt: skip
    if div.split_brain or fork is None:
        return impossible(f"no fork point to read from: {div.reason}")
    if not slot_dirs(host, node):
        return impossible(
            f"{node.site} has no capture slot (failback's monitor keeps them on the "
            "primary; they need wal_level=logical and the wal2json plugin)"
        )
    try:
        return _decode_isolated(host, node, fork, timeout=timeout)
    except FailbackError as exc:
        return impossible(f"decoding on {node.site} failed: {exc.message}")


def socket_dir(node: PgNode) -> str:
    """The private socket directory of the isolated start, beside the data directory."""
    return f"{node.pgdata.rstrip('/')}.failback-capture"


def isolated_options(node: PgNode) -> list[str]:
    """Server options that make it unreachable: no TCP, a socket in a directory only its
    OS user can enter, nothing archived from it. Its own pg_hba.conf there lets that
    user in whatever the cluster's own file says (the directory is the access control)."""
    where = socket_dir(node)
    return [
        "-c listen_addresses=''",
        f"-c unix_socket_directories={shlex.quote(where)}",
        f"-c hba_file={shlex.quote(os.path.join(where, 'pg_hba.conf'))}",
        "-c archive_mode=off",
    ]


def stop_isolated(host: Host, node: PgNode, *, timeout: float = 120.0) -> bool:
    """Stop an isolated start left by an interrupted capture and remove its socket
    directory; True if there was one. A node running on its usual socket is left alone."""
    where = socket_dir(node)
    if not host.exists(where):
        return False
    if running_postmaster(host, node) is not None:
        stop(host, node, mode="fast", timeout=timeout)
    wait_stale_postmaster(host, node, timeout=timeout)
    host.remove(where)
    return True


def _decode_isolated(host: Host, node: PgNode, fork: int, *, timeout: float) -> Capture:
    if running_postmaster(host, node) is not None:
        stop(host, node, mode="fast", timeout=timeout)
    wait_stale_postmaster(host, node, timeout=timeout)
    where = socket_dir(node)
    host.make_dirs(where, owner=node.os_user, mode=0o700)
    host.write_text(
        os.path.join(where, "pg_hba.conf"), ISOLATED_HBA, owner=node.os_user, mode=0o600
    )
    try:
        start(host, node, options=isolated_options(node), check_connect=False, timeout=timeout)
        return _read(host, node, fork, timeout=timeout)
    finally:
        stop(host, node, mode="fast", timeout=timeout)
        wait_stale_postmaster(host, node, timeout=timeout)
        host.remove(where)


def _psql(
    host: Host, node: PgNode, dbname: str, sql: str, *, timeout: float
) -> tuple[list[str], list[str]]:
    """One query over the private socket: (output lines, server notices)."""
    env = {"PGPASSWORD": node.password} if node.password else None
    result = run_pg(
        host, node,
        [node.bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
         "-h", socket_dir(node), "-p", str(node.port), "-U", node.user, "-d", dbname,
         "-c", sql],
        timeout=timeout, env=env, what=f"psql on the isolated {node.site}",
    )  # fmt: skip
    return result.stdout.splitlines(), result.stderr.splitlines()


def _read(host: Host, node: PgNode, fork: int, *, timeout: float) -> Capture:
    since = format_lsn(fork)
    capture = Capture(site=node.site, captured=True, reason="", since_lsn=since)
    lines, _ = _psql(
        host, node, node.dbname,
        "SELECT d.datname || '|' || coalesce(s.slot_name, '') || '|' ||"
        " coalesce(s.confirmed_flush_lsn::text, '') || '|' || coalesce(s.wal_status, '')"
        " FROM pg_database d LEFT JOIN pg_replication_slots s"
        f" ON s.database = d.datname AND s.slot_name = '{SLOT_PREFIX}' || d.oid"
        " WHERE d.datallowconn AND NOT d.datistemplate ORDER BY d.datname",
        timeout=timeout,
    )  # fmt: skip
    slots: list[tuple[str, str]] = []
    for line in lines:
        datname, slot, confirmed, status = line.rsplit("|", 3)
        if not slot:
            raise PgError(f"database {datname} has no capture slot: its commits cannot be read")
        if status == "lost":
            raise PgError(
                f"the capture slot of database {datname} lost its WAL (max_slot_wal_keep_size)"
            )
        if confirmed and parse_lsn(confirmed) > fork:
            raise PgError(
                f"the capture slot of database {datname} stands at {confirmed}, past the "
                f"fork {since}: commits between them cannot be read"
            )
        slots.append((datname, slot))
    options = ", ".join(f"'{k}', '{v}'" for k, v in WAL2JSON_OPTIONS)
    for datname, slot in slots:
        out, notices = _psql(
            host, node, datname,
            f"SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL, {options})",
            timeout=timeout,
        )  # fmt: skip
        found = decode(out, since, notices)
        capture.databases.append(datname)
        capture.transactions += len(found.transactions)
        capture.changes += [{"database": datname, **c.to_dict()} for c in found.changes]
        capture.unkeyed += [{"database": datname, **u} for u in found.unkeyed]
        capture.without_rows += [{"database": datname, **t} for t in found.without_rows]
    capture.reason = (
        f"{capture.transactions} transaction(s) changed rows on {node.site} after the fork "
        f"at {since}, in {len(slots)} database(s)"
    )
    if capture.without_rows:
        capture.reason += (
            f"; {len(capture.without_rows)} more committed no row change decoding shows "
            "(DDL, sequences, tables without a key)"
        )
    return capture
