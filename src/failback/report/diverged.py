"""A captured set of diverged transactions, as a person reconciles it.

The capture (kept with the failback run that took it) lists every row the old primary
changed after the fork. Here it becomes what ``failback diverged`` prints: a table, the
changes as JSON, or a SQL script that would re-apply them. The script is for review,
never for running as it is: each database's block ends in ``ROLLBACK``, so feeding it to
psql changes nothing until a person has read it and chosen to commit; the rows may have
changed on the new primary since.
"""

from __future__ import annotations

import json
from typing import Any

CHANGE_FIELDS = ("xid", "commit_time", "table", "op", "key", "old", "new")
"""One entry of ``--format json`` (plus ``database`` and ``commit_lsn``)."""


def changes_json(capture: dict[str, Any]) -> list[dict[str, Any]]:
    """The changes, one entry per row, in commit order."""
    keep = (*CHANGE_FIELDS, "database", "commit_lsn")
    return [{k: change.get(k) for k in keep} for change in capture.get("changes") or []]


def summary_line(run_id: int, capture: dict[str, Any]) -> str:
    """One line for a person: how much, from where, since when."""
    if not capture.get("captured"):
        return f"run {run_id}: nothing captured: {capture.get('reason')}"
    return (
        f"run {run_id}: {capture.get('transactions', 0)} transaction(s), "
        f"{capture.get('rows', len(capture.get('changes') or []))} row(s) committed on "
        f"{capture.get('site')} after the fork at {capture.get('since_lsn')}"
    )


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(table: str) -> str:
    """``schema.table`` -> ``"schema"."table"`` (a dot inside a quoted name stays)."""
    schema, _, name = table.partition(".")
    return f"{quote_ident(schema)}.{quote_ident(name)}" if name else quote_ident(schema)


def literal(value: Any) -> str:
    """A SQL literal from a decoded JSON value (wal2json prints non-numbers as text)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return "'" + str(value).replace("'", "''") + "'"


def _where(key: dict[str, Any] | None) -> str:
    if not key:
        return "false /* no key: find the row by hand */"
    return " AND ".join(
        f"{quote_ident(k)} IS NULL" if v is None else f"{quote_ident(k)} = {literal(v)}"
        for k, v in key.items()
    )


def psql_connect(database: str) -> str:
    """psql's ``\\connect`` to ``database`` on the same server, whatever its name holds:
    given bare, a name with ``=`` would be read as connection settings (another host)."""
    conninfo = "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return '\\connect -reuse-previous=on "' + conninfo.replace('"', '""') + '"'


def statement(change: dict[str, Any]) -> str:
    """The statement that would re-apply one change on the new primary."""
    table = qualified(str(change["table"]))
    op = change["op"]
    if op == "insert":
        new = change.get("new") or {}
        columns = ", ".join(quote_ident(c) for c in new)
        values = ", ".join(literal(v) for v in new.values())
        return f"INSERT INTO {table} ({columns}) VALUES ({values});"
    if op == "update":
        new = change.get("new") or {}
        sets = ", ".join(f"{quote_ident(c)} = {literal(v)}" for c, v in new.items())
        return f"UPDATE {table} SET {sets} WHERE {_where(change.get('key'))};"
    if op == "truncate":
        return f"TRUNCATE {table};  -- every row the table had then: check before committing"
    return f"DELETE FROM {table} WHERE {_where(change.get('key'))};"


def comment(text: str) -> str:
    """``text`` as SQL comment lines: every line of it, so that a name or value holding a
    line break never ends the comment and runs as SQL."""
    return "\n".join(f"-- {line}" for line in text.split("\n"))


def sql_script(run_id: int, capture: dict[str, Any]) -> str:
    """Commented statements, grouped by database and transaction, ending in ROLLBACK."""
    lines = [
        comment(f"failback: diverged transactions of run {run_id}"),
        comment(summary_line(run_id, capture)),
        "-- Review before running: the new primary may have changed these rows since.",
        "-- Each database's block ends in ROLLBACK: nothing is applied until you make it",
        "-- COMMIT yourself.",
    ]
    for unkeyed in capture.get("unkeyed") or []:
        lines.append(
            comment(
                f"NOT CAPTURED: an {str(unkeyed.get('op', '?')).upper()} in "
                f"{unkeyed.get('database', '?')}.{unkeyed.get('table')} (no primary key or "
                "replica identity: the WAL does not say which row); compare by hand"
            )
        )
    for txn in capture.get("without_rows") or []:
        lines.append(
            comment(
                f"NOT SHOWN: transaction {txn.get('xid')} in {txn.get('database', '?')}, "
                f"committed {txn.get('commit_time')}, changed no row decoding shows (DDL such "
                "as CREATE/ALTER/DROP, sequences, tables without a key); look in the old "
                "data directory's server log or WAL"
            )
        )
    by_database: dict[str, list[dict[str, Any]]] = {}
    for change in capture.get("changes") or []:
        by_database.setdefault(str(change.get("database") or ""), []).append(change)
    for database, changes in by_database.items():
        if "\n" in database:  # psql's meta-commands end at a line break: not runnable
            lines += [
                "",
                comment(
                    f"database {database!r}: its name holds a line break, "
                    "which \\connect cannot take: connect to it yourself"
                ),
            ]
            lines += [comment(statement(change)) for change in changes]
            continue
        lines += ["", psql_connect(database) if database else "", "BEGIN;"]
        xid = None
        for change in changes:
            if change.get("xid") != xid:
                xid = change.get("xid")
                lines.append(
                    comment(
                        f"transaction {xid}, committed {change.get('commit_time')} "
                        f"(commit LSN {change.get('commit_lsn')})"
                    )
                )
            lines.append(statement(change))
        lines.append("ROLLBACK;  -- make this COMMIT once you have reviewed the block")
    return "\n".join(lines) + "\n"


def diverged_line(run_id: int, summary: dict[str, Any]) -> str:
    """What ``run show`` and a finished failback say about the capture, in one line."""
    if not summary.get("captured"):
        accepted = " (resynced with approval)" if summary.get("loss_accepted") else ""
        return f"diverged: not captured{accepted}: {summary.get('reason')}"
    if not (summary.get("rows") or summary.get("unkeyed") or summary.get("without_rows")):
        return f"diverged: nothing ({summary.get('reason')})"
    unkeyed = len(summary.get("unkeyed") or [])
    empty = len(summary.get("without_rows") or [])
    more = f", {unkeyed} change(s) of tables without a key not readable" if unkeyed else ""
    if empty:
        more += f", {empty} transaction(s) with no row shown (DDL...)"
    return (
        f"diverged: {summary.get('transactions')} transaction(s), {summary.get('rows')} "
        f"row(s) committed on {summary.get('site')} after the fork{more}: "
        f"`failback diverged {run_id}`"
    )
