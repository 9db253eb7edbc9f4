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

import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Any

from failback.drivers.postgres.capture_slots import SLOT_PREFIX, slot_dirs, slot_name
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


def capture_diverged(
    host: Host, node: PgNode, source: PgNode, *, timeout: float, enabled: bool = True
) -> Capture:
    """Capture ``node``'s commits after ``source``'s fork (``captured`` False with the
    reason when that cannot be done exactly). Leaves ``node`` stopped when it decoded.
    ``enabled`` False (``capture_diverged: false``): only says whether anything diverged."""

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
    if not enabled:
        return impossible(f"capture_diverged is off, and {div.reason}")
    if div.split_brain or fork is None:
        return impossible(f"no fork point to read from: {div.reason}")
    for signal_file in ("standby.signal", "recovery.signal"):
        if host.exists(os.path.join(node.pgdata, signal_file)):
            # it would start in recovery: streaming from production, or restoring from
            # its archive, instead of staying where nobody reaches it
            return impossible(
                f"{node.site} has {signal_file} in its data directory: it would start in "
                "recovery, not as the old primary whose commits are to be read"
            )
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
        # nothing it starts may connect out: a subscription's apply worker would take
        # changes from its publisher's slot that production's subscriber then never gets
        "-c max_logical_replication_workers=0",
        # no background worker of an extension either (pg_cron's jobs, say): reading
        # slots needs none, and a job may write or reach another server
        "-c shared_preload_libraries=''",
        "-c primary_conninfo=''",
        "-c primary_slot_name=''",
        "-c restore_command=''",
        "-c synchronous_standby_names=''",
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


def conninfo_dbname(name: str) -> str:
    """``dbname='...'`` for psql's ``-d``: given bare, a name holding ``=`` would be read as
    connection settings (``host=elsewhere``) and override ``-h``/``-p``."""
    return "dbname='" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _psql(
    host: Host, node: PgNode, dbname: str, commands: list[str], *, timeout: float
) -> tuple[list[str], list[str]]:
    """SQL over the private socket, one session (``commands`` in order): (output lines,
    server notices)."""
    env = {"PGPASSWORD": node.password} if node.password else None
    argv = [node.bin("psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-h", socket_dir(node), "-p", str(node.port), "-U", node.user,
            "-d", conninfo_dbname(dbname)]  # fmt: skip
    for command in commands:
        argv += ["-c", command]
    result = run_pg(
        host, node, argv, timeout=timeout, env=env, what=f"psql on the isolated {node.site}"
    )
    return result.stdout.splitlines(), result.stderr.splitlines()


_DATABASES = (
    "SELECT coalesce(json_agg(json_build_object("
    "'oid', d.oid::bigint, 'name', d.datname, 'connectable', d.datallowconn,"
    " 'slot', s.slot_name, 'confirmed', s.confirmed_flush_lsn::text, 'status', s.wal_status)"
    " ORDER BY d.datname), '[]')"
    " FROM pg_database d LEFT JOIN pg_replication_slots s"
    f" ON s.database = d.datname AND s.slot_name = '{SLOT_PREFIX}' || d.oid"
    " WHERE NOT d.datistemplate"
)
"""Every database and its capture slot, as one JSON document: names are data, never split
on a separator a name may contain."""

READING_SLOT = "failback_diverged_reading"
"""A temporary copy of a database's slot, moved to the fork before it is read: decoding
then starts at the fork, so the server's warnings about rows without a key are about
diverged transactions only (a temporary slot goes with its session)."""


def _slots_to_read(host: Host, node: PgNode, fork: int, *, timeout: float) -> list[tuple[str, int]]:
    """(database, oid) of every database, each with a slot that can be read exactly from the
    fork; PgError (the capture is then not exact) otherwise."""
    since = format_lsn(fork)
    lines, _ = _psql(host, node, node.dbname, [_DATABASES], timeout=timeout)
    databases = json.loads("".join(lines) or "[]")
    found: list[tuple[str, int]] = []
    for db in databases:
        name, oid = str(db["name"]), int(db["oid"])
        if not db["connectable"]:
            raise PgError(
                f"database {name!r} allows no connections (datallowconn is off): what it "
                "committed cannot be read"
            )
        if db["slot"] != slot_name(oid):
            raise PgError(f"database {name!r} has no capture slot: its commits cannot be read")
        if db["status"] == "lost":
            raise PgError(
                f"the capture slot of database {name!r} lost its WAL (max_slot_wal_keep_size)"
            )
        confirmed = db["confirmed"]
        if confirmed and parse_lsn(str(confirmed)) > fork:
            raise PgError(
                f"the capture slot of database {name!r} stands at {confirmed}, past the "
                f"fork {since}: commits between them cannot be read"
            )
        found.append((name, oid))
    return found


def _read(host: Host, node: PgNode, fork: int, *, timeout: float) -> Capture:
    since = format_lsn(fork)
    capture = Capture(site=node.site, captured=True, reason="", since_lsn=since)
    slots = _slots_to_read(host, node, fork, timeout=timeout)
    options = ", ".join(f"'{k}', '{v}'" for k, v in WAL2JSON_OPTIONS)
    for datname, oid in slots:
        # names built here from an integer: nothing from the server is pasted into SQL
        out, notices = _psql(
            host, node, datname,
            [f"SELECT FROM pg_copy_logical_replication_slot('{slot_name(oid)}',"
             f" '{READING_SLOT}', true)",
             f"SELECT FROM pg_replication_slot_advance('{READING_SLOT}', '{since}')",
             f"SELECT data FROM pg_logical_slot_peek_changes('{READING_SLOT}', NULL, NULL,"
             f" {options})"],
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
