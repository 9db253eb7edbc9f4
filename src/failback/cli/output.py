"""Printing for people (rich, on stderr for progress) and for scripts (--json on stdout)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from failback.errors import FailbackError
from failback.model.units import format_lsn

stdout = Console(soft_wrap=True, emoji=False)
stderr = Console(stderr=True, soft_wrap=True, emoji=False)


def emit_json(document: Any) -> None:
    """One JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_error(error: FailbackError, *, as_json: bool) -> None:
    if as_json:
        emit_json(error.to_dict())
        return
    problems = getattr(error, "problems", None)
    if problems:
        for problem in problems:
            stderr.print(str(problem), markup=False, highlight=False)
        stderr.print(f"error: {error.message}", style="bold red", markup=False, highlight=False)
    else:
        stderr.print(f"error: {error.message}", style="bold red", markup=False, highlight=False)
    if error.hint:
        stderr.print(f"hint: {error.hint}", style="yellow", markup=False, highlight=False)


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def fmt_value(value: float | None, unit: str | None) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return fmt_duration(value)
    if unit == "lsn":
        return format_lsn(int(value))
    if unit == "bytes":
        return f"{int(value)} bytes"
    if float(value).is_integer():
        return f"{int(value)}" + (f" {unit}" if unit else "")
    return f"{value:.4g}" + (f" {unit}" if unit else "")


def report_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"run {report['run_id']}: {report['kind']} of {report['service']}"
        f" {report.get('from_site')} -> {report.get('to_site')}: {report['status']}"
        f" in {fmt_duration(report.get('duration_s'))}"
    )
    table.add_column("step")
    table.add_column("status")
    table.add_column("duration", justify="right")
    table.add_column("note")
    for step in report["steps"]:
        note = step.get("error") or ""
        if step.get("undo"):
            note = f"{step['undo']}. {note}".strip()
        table.add_row(step["title"], step["status"], fmt_duration(step.get("duration_s")), note)
    return table


def measurements_table(report: dict[str, Any]) -> Table | None:
    if not report.get("measurements"):
        return None
    table = Table(title="measurements")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_column("note")
    for m in report["measurements"]:
        table.add_row(m["name"], fmt_value(m.get("value"), m.get("unit")), m.get("note") or "")
    return table
