"""The logical slots that let an unplanned failover's lost commits be read afterwards.

failback keeps one logical replication slot (output plugin ``wal2json``) per database
of the primary, and moves each forward to what the standby has *replayed*. When the
primary dies and the standby is promoted, the standby's timeline forks at or after
that point, so the slot on the dead primary still holds every transaction the standby
never had: the capture (``capture.py``) decodes them before a resync erases them.

Why replayed and not flushed: ``pg_stat_replication.replay_lsn`` is the end of a WAL
record the standby applied, so every commit record that starts before it is on the
standby. A flush position may fall inside a commit record: the standby would not have
that commit, yet a slot advanced past the record's start would skip it.

The slots are kept by the monitor (a second or so behind the standby), never by a
read: observing the database writes nothing. They cost what a logical slot costs: the
primary keeps WAL back to the slot (bounded by ``max_slot_wal_keep_size``, past which
PostgreSQL invalidates the slot and the capture says so), ``wal_level=logical`` writes
a little more WAL, each advance decodes the WAL it passes over, and ``DROP DATABASE``
refuses while a database has a slot (docs/concepts.md, "Diverged transactions").
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.lsn import format_lsn, to_lsn
from failback.drivers.postgres.node import PgNode
from failback.hosts.base import Host

SLOT_PREFIX = "failback_diverged_"
"""Slot names are cluster-wide: one slot per database, named by the database's OID."""
PLUGIN = "wal2json"
KEEPER_LIMITS: dict[str, object] = {
    "options": "-c statement_timeout=5000",
    "tcp_user_timeout": 5000,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 3,
}
"""A primary cut off mid-round fails the round within seconds instead of holding the
keeper (and the monitor's shutdown) for the kernel's TCP timeout (~15 min)."""
CREATE_TIMEOUT_MS = 10_000
"""Creating a logical slot waits for the transactions in progress to end: a long one
must not hold the keeper for longer than this (it tries again on its next round)."""


def slot_name(database_oid: int) -> str:
    return f"{SLOT_PREFIX}{int(database_oid)}"


@dataclass
class SlotsKept:
    """One round of the keeper on one primary: what it did and what stands in the way."""

    site: str
    databases: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    advanced_to: str | None = None
    """The standby's replay position the slots were moved to (None: no standby streams)."""
    problem: str | None = None
    """Why no capture would be possible right now (wal_level, plugin, not a primary)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def keep_capture_slots(
    primary: PgNode, standby_site: str, *, create_timeout_ms: int = CREATE_TIMEOUT_MS
) -> SlotsKept:
    """Create the missing slots on ``primary`` and move them to ``standby_site``'s replay
    position. Never moves a slot backwards, never past what the standby replayed."""
    kept = SlotsKept(site=primary.site)
    with connect(primary, **KEEPER_LIMITS) as conn:
        wal_level, keep_size, in_recovery = conn.execute(
            "SELECT current_setting('wal_level'), current_setting('max_slot_wal_keep_size'),"
            " pg_is_in_recovery()"
        ).fetchone()  # type: ignore[misc]
        if in_recovery:
            kept.problem = f"{primary.site} is not a primary"
            return kept
        if wal_level != "logical":
            kept.problem = (
                f"wal_level is {wal_level} on {primary.site}: capturing diverged "
                "transactions needs wal_level=logical (a restart)"
            )
            return kept
        if str(keep_size).strip() == "-1":
            kept.problem = (
                f"max_slot_wal_keep_size is -1 on {primary.site}: a capture slot that "
                "nothing moves forward (no monitor running) could fill the disk with WAL; "
                "set a limit (e.g. 10GB, a reload)"
            )
            return kept
        databases = conn.execute(
            "SELECT oid, datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
            " ORDER BY datname"
        ).fetchall()
        slots = {
            str(name): (to_lsn(confirmed), str(status or ""))
            for name, confirmed, status in conn.execute(
                "SELECT slot_name, confirmed_flush_lsn, wal_status FROM pg_replication_slots"
                " WHERE slot_name LIKE %s",
                (SLOT_PREFIX.replace("_", r"\_") + "%",),
            ).fetchall()
        }
        row = conn.execute(
            "SELECT replay_lsn FROM pg_stat_replication WHERE application_name = %s"
            " AND replay_lsn IS NOT NULL ORDER BY replay_lsn DESC LIMIT 1",
            (standby_site,),
        ).fetchone()
    replay = to_lsn(row[0]) if row else None
    kept.advanced_to = None if replay is None else format_lsn(replay)
    for oid, name in databases:
        kept.databases.append(str(name))
        slot = slot_name(int(oid))
        confirmed, status = slots.get(slot, (None, ""))
        with connect(primary, dbname=str(name), **KEEPER_LIMITS) as conn:
            if status == "lost":  # invalidated by max_slot_wal_keep_size: start again
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                confirmed = None
                slots.pop(slot)
            if slot not in slots:
                if _create(conn, slot, kept, create_timeout_ms):
                    kept.created.append(slot)
            elif replay is not None and confirmed is not None and replay > confirmed:
                conn.execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                    (slot, format_lsn(replay)),
                )
    return kept


def _create(conn: Any, slot: str, kept: SlotsKept, timeout_ms: int) -> bool:
    """Create one slot; a failure (plugin missing, a long transaction) is the round's
    ``problem``, and the next round tries again."""
    try:
        conn.execute(f"SET statement_timeout = {int(timeout_ms)}")
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, PLUGIN))
    except Exception as exc:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        if "could not access file" in message and PLUGIN in message:
            message = f"the {PLUGIN} output plugin is not installed on {kept.site}"
        kept.problem = f"cannot create slot {slot}: {message}"
        return False
    return True


def slot_dirs(host: Host, node: PgNode) -> list[str]:
    """failback's slots in a stopped node's data directory (``pg_replslot/NAME``)."""
    where = os.path.join(node.pgdata, "pg_replslot")
    if not host.exists(where):
        return []
    return sorted(n for n in host.list_dir(where) if n.startswith(SLOT_PREFIX))


def drop_slot_files(host: Host, node: PgNode) -> list[str]:
    """Remove failback's slots from a *stopped* node about to start as a standby.

    A logical slot left on a standby would hold its WAL and, with hot_standby_feedback,
    the primary's catalog cleanup; the capture has read it by then (it runs before any
    resync). pg_rewind leaves ``pg_replslot`` as it was, so this is the only cleanup.
    """
    names = slot_dirs(host, node)
    for name in names:
        host.remove(os.path.join(node.pgdata, "pg_replslot", name))
    return names
