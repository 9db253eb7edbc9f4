"""What the journal says about a service's drills: the list, the last one, and whether
the policy's ``require_drill_within`` is met (read by ``failback drills``, ``failback
status``, the API and the monitor's failback decision — one reading, so none of them
can disagree with another).

A drill counts for the policy only when it *succeeded*: its copy was promoted, took a
verified write and passed every check aimed at it. A drill that rolled back (a check
failed, it yielded to a failover, a person aborted it) proves nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from failback.model.locks import DRILL_KIND
from failback.store import Journal, RunRecord

SCANNED = 200
"""How many of a service's newest drills are read to find the last successful one."""


def drill_row(run: RunRecord, now: float | None = None) -> dict[str, Any]:
    """One drill as ``failback drills`` and the API list it (status as journaled)."""
    now = time.time() if now is None else now
    rto = (run.values or {}).get("drill_rto_s")
    ended = run.finished_at
    return {
        "id": run.id,
        "service": run.service,
        "site": run.plan.get("to_site"),
        "status": run.status,
        "started_at": run.created_at,
        "finished_at": ended,
        "rto_s": None if rto is None else float(rto),
        "age_s": now - (ended or run.created_at),
        "error": run.error,
    }


def list_drills(
    journal: Journal, *, service: str | None = None, limit: int = 50
) -> list[RunRecord]:
    """The newest drills first."""
    return journal.list_runs(service=service, limit=limit, kinds=(DRILL_KIND,))


@dataclass(frozen=True)
class DrillRecord:
    """The last drill of a service, and its last successful one."""

    last: dict[str, Any] | None
    last_success: dict[str, Any] | None


def last_drills(journal: Journal, service: str, now: float | None = None) -> DrillRecord:
    runs = list_drills(journal, service=service, limit=SCANNED)
    last = drill_row(runs[0], now) if runs else None
    success = next((drill_row(r, now) for r in runs if r.status == "succeeded"), None)
    return DrillRecord(last, success)


def drill_requirement(
    within_s: float | None, last_success_at: float | None, now: float
) -> tuple[bool, str]:
    """Is ``require_drill_within`` met? (met, reason). Pure: the monitor decides on it."""
    if within_s is None:
        return True, "no drill required"
    window = _human(within_s)
    if last_success_at is None:
        return False, f"no successful drill yet (require_drill_within {window})"
    age = now - last_success_at
    if age > within_s:
        return False, (
            f"last successful drill {_human(age)} ago, more than require_drill_within {window}"
        )
    return True, f"last successful drill {_human(age)} ago (within {window})"


def drill_summary(
    journal: Journal, service: str, within_s: float | None, now: float | None = None
) -> dict[str, Any]:
    """The status document's ``drill``: last drill, last success, the policy's verdict."""
    now = time.time() if now is None else now
    record = last_drills(journal, service, now)
    success_at = None
    if record.last_success is not None:
        success_at = record.last_success["finished_at"] or record.last_success["started_at"]
    met, reason = drill_requirement(within_s, success_at, now)
    return {
        "last": record.last,
        "last_success": record.last_success,
        "require_within_s": within_s,
        "requirement_met": met,
        "reason": reason,
    }


def _human(seconds: float) -> str:
    """7 days -> ``7d``; 90 min -> ``1h30m``; 42 s -> ``42s``."""
    seconds = max(0.0, seconds)
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    return f"{secs}s"
