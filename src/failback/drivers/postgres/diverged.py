"""What an old primary committed after the fork: wal2json's output made into changes.

After an unplanned failover with asynchronous replication the old primary may hold
commits its standby never received. The new primary's timeline history names the
fork: the LSN where its timeline began. Every transaction the old primary committed
at or after that LSN exists only there, and a resync (pg_rewind, a re-clone) erases it.

The capture decodes them from a logical slot that failback keeps on the primary,
advanced to what the standby has flushed, with the ``wal2json`` output plugin
(format version 2: one JSON object per row, plus B/C objects for each transaction's
begin and commit). This module only turns that output into changes a person can read;
finding the fork and starting the old primary where nobody can reach it live elsewhere.

Exactness rests on the commit LSN, not on the slot: crash recovery puts a slot back to
its last checkpointed position, so the slot may replay transactions the standby did
receive. A transaction is diverged when its commit record starts at or after the fork
(a record never straddles the fork: the new timeline begins at the end of the last
record the standby replayed).

A table without a primary key or replica identity has no key in the WAL for UPDATE and
DELETE: wal2json skips those rows with a server WARNING ("no tuple identifier for
UPDATE in table ..."). They are reported as ``unkeyed`` with the table and operation,
never silently dropped.
"""

from __future__ import annotations

import decimal
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.lsn import parse_lsn

OPS = {"I": "insert", "U": "update", "D": "delete", "T": "truncate"}
"""wal2json's change actions, as the capture names them."""
NOT_CHANGES = frozenset({"M"})
"""Actions that change no table: logical messages (``pg_logical_emit_message``)."""


class UnknownChange(PgError):
    """An action this decoder does not know: the capture cannot claim to be complete."""


WAL2JSON_OPTIONS = (
    ("format-version", "2"),
    ("include-xids", "1"),
    ("include-timestamp", "1"),
    ("include-lsn", "1"),
    ("include-pk", "1"),
)
"""What the capture asks wal2json for (``pg_logical_slot_peek_changes``)."""

_UNKEYED = re.compile(
    r"no tuple identifier for (?P<op>UPDATE|DELETE) in table "
    r'"(?P<schema>[^"]+)"\."(?P<table>[^"]+)"'
)


@dataclass(frozen=True)
class Change:
    """One row one diverged transaction changed."""

    xid: int
    commit_time: str
    commit_lsn: str
    table: str
    op: str
    key: dict[str, Any] | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "xid": self.xid,
            "commit_time": self.commit_time,
            "commit_lsn": self.commit_lsn,
            "table": self.table,
            "op": self.op,
            "key": self.key,
            "old": self.old,
            "new": self.new,
        }


@dataclass
class Diverged:
    """Everything committed after the fork, in commit order."""

    since_lsn: str
    changes: list[Change] = field(default_factory=list)
    transactions: list[int] = field(default_factory=list)
    unkeyed: list[dict[str, str]] = field(default_factory=list)
    """Rows the WAL could not key (no primary key or replica identity): table and op."""
    without_rows: list[dict[str, Any]] = field(default_factory=list)
    """Committed transactions that changed no row logical decoding shows: DDL (CREATE,
    ALTER, DROP are not decoded), only sequences, only unkeyed rows. Named, so that a
    person knows they existed: xid, commit time and LSN."""

    @property
    def rows(self) -> int:
        return len(self.changes)


def _values(entries: Iterable[dict[str, Any]] | None) -> dict[str, Any] | None:
    if entries is None:
        return None
    return {str(e["name"]): _plain(e.get("value")) for e in entries}


def _plain(value: Any) -> Any:
    """A decimal as its exact text (JSON has no decimal type; SQL casts the text back)."""
    return str(value) if isinstance(value, decimal.Decimal) else value


def _key(row: dict[str, Any]) -> dict[str, Any] | None:
    """The row's key: the old key wal2json gives for UPDATE and DELETE (``identity``),
    or the primary key columns of an INSERT's new values."""
    identity = row.get("identity")
    if identity is not None:
        return _values(identity)
    names = [str(pk["name"]) for pk in row.get("pk") or []]
    new = _values(row.get("columns")) or {}
    return {name: new.get(name) for name in names} if names else None


def decode(lines: Iterable[str], since_lsn: str, notices: Iterable[str] = ()) -> Diverged:
    """The diverged changes in wal2json (format 2) output lines, committed at or after
    ``since_lsn`` (the fork). ``notices`` are the server's messages during decoding,
    where wal2json names the rows it could not key."""
    fork = parse_lsn(since_lsn)
    result = Diverged(since_lsn=since_lsn)
    pending: list[dict[str, Any]] = []
    for line in lines:
        if not line.strip():
            continue
        # numbers as decimals: a numeric(20,2) must not come back as a rounded float
        record = json.loads(line, parse_float=decimal.Decimal)
        action = record.get("action")
        if action == "B":
            pending = []
        elif action in OPS:
            pending.append(record)
        elif action in NOT_CHANGES:
            continue
        elif action == "C":
            commit_lsn = str(record["lsn"])
            if parse_lsn(commit_lsn) >= fork:
                xid = int(record["xid"])
                if pending:
                    result.transactions.append(xid)
                    result.changes.extend(_change(row, record) for row in pending)
                else:
                    result.without_rows.append(
                        {"xid": xid, "commit_time": str(record.get("timestamp") or ""),
                         "commit_lsn": commit_lsn}
                    )  # fmt: skip
            pending = []
        else:
            raise UnknownChange(f"wal2json sent an action failback does not know: {line[:200]}")
    for notice in notices:
        found = _UNKEYED.search(notice)
        if found:
            result.unkeyed.append(
                {"table": f"{found['schema']}.{found['table']}", "op": found["op"].lower()}
            )
    return result


def _change(row: dict[str, Any], commit: dict[str, Any]) -> Change:
    op = OPS[str(row["action"])]
    identity = _values(row.get("identity"))
    return Change(
        xid=int(commit["xid"]),
        commit_time=str(commit.get("timestamp") or ""),
        commit_lsn=str(commit["lsn"]),
        table=f"{row['schema']}.{row['table']}",
        op=op,
        key=_key(row),
        old=identity if op in ("update", "delete") else None,
        new=_values(row.get("columns")) if op in ("insert", "update") else None,
    )
