"""``failback diverged RUN_ID``: what an unplanned failover left on the old primary.

Reads what a failback captured before it resynced the returning site (the journal
keeps it with the run). Changes nothing: the SQL it prints is for a person to review.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from failback.cli.context import journal_from_options
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt
from failback.cli.output import emit_json, stderr, stdout
from failback.errors import UsageError
from failback.report.diverged import changes_json, sql_script, summary_line

SHOWN_ROWS = 200
"""The table shows this many rows; --format json or sql gives them all."""


class Format(StrEnum):
    table = "table"
    json = "json"
    sql = "sql"


def register(app: typer.Typer) -> None:
    app.command("diverged")(diverged)


def diverged(
    run_id: Annotated[int, typer.Argument(help="The failback run that captured them")],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="table (for reading), json (one entry per changed row) or sql (statements "
            "that would re-apply them, ending in ROLLBACK, for review)",
        ),
    ] = Format.table,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Show what the old primary committed after the fork, captured before the resync."""
    journal = journal_from_options(config, state_dir)
    run = journal.get_run(run_id)
    summary = run.values.get("diverged")
    capture = journal.diverged(run_id)
    if summary is None and capture is None:
        raise UsageError(
            f"run {run_id} ({run.kind} of {run.service}) captured no diverged transactions",
            hint="a failback captures them before it resyncs the returning site; "
            "`failback runs --service " + run.service + "` lists the failbacks",
        )
    document = {**(summary or {}), **(capture or {})}
    document.setdefault("rows", len(document.get("changes") or []))
    if as_json:
        out = {"run_id": run_id, **document}
        if fmt is Format.sql:
            out["sql"] = sql_script(run_id, document)
        emit_json(out)
        return 0
    if fmt is Format.json:
        emit_json(changes_json(document))
        return 0
    if fmt is Format.sql:
        stdout.out(sql_script(run_id, document), end="", highlight=False)
        return 0
    stdout.print(summary_line(run_id, document), markup=False, highlight=False)
    for unkeyed in document.get("unkeyed") or []:
        stderr.print(
            f"not captured: an {unkeyed.get('op')} in {unkeyed.get('database')}."
            f"{unkeyed.get('table')} (no primary key: the WAL does not name the row)",
            style="yellow",
            markup=False,
        )
    changes = changes_json(document)
    if changes:
        stdout.print(_table(changes[:SHOWN_ROWS]))
        if len(changes) > SHOWN_ROWS:
            stdout.print(
                f"{len(changes) - SHOWN_ROWS} more: --format json or --format sql shows all",
                markup=False,
            )
    return 0


def _table(changes: list[dict[str, object]]) -> Table:
    table = Table()
    for column in ("xid", "committed", "table", "op", "key", "values"):
        table.add_column(column)
    for change in changes:
        values = change.get("new") if change.get("op") != "delete" else change.get("old")
        cells = (
            str(change.get("xid")),
            str(change.get("commit_time")),
            f"{change.get('database')}.{change.get('table')}",
            str(change.get("op")),
            _pairs(change.get("key")),
            _pairs(values),
        )
        table.add_row(*(Text(cell) for cell in cells))  # data, never markup: "[/]" is a value
    return table


def _pairs(values: object) -> str:
    if not isinstance(values, dict):
        return "" if values is None else str(values)
    return ", ".join(f"{k}={v!r}" for k, v in values.items())
