"""One line of run history: who, what, how it ended, and the figures people compare.

The dashboard's history, ``/api/v1/runs`` and the Prometheus metrics show the same
headline measurements (RTO, write-unavailability, what was lost or at risk); picking
them out of a report happens here so that no interface does it its own way.
"""

from __future__ import annotations

from typing import Any

from failback.store import Journal, RunRecord

HEADLINE = {
    "rto_s": "rto_s",
    "write_unavailability_s": "write_unavailability_s",
    "possible_loss_bytes": "possible_loss_bytes",
}
"""Measurement name -> key in the summary."""


def headline(measurements: list[dict[str, Any]]) -> dict[str, float | None]:
    """The last value of each headline measurement (``None`` when the run has none)."""
    found: dict[str, float | None] = dict.fromkeys(HEADLINE.values())
    for m in measurements:
        key = HEADLINE.get(m["name"])
        if key is not None:
            found[key] = m["value"]
    return found


def run_summary(journal: Journal, run: RunRecord, status: str) -> dict[str, Any]:
    """A run as a history row; ``status`` is the effective one (``interrupted``...)."""
    steps = journal.steps(run.id)
    done = sum(1 for s in steps if s.status in ("done", "skipped"))
    current = next((s.step_id for s in steps if s.status not in ("done", "skipped")), None)
    end = run.finished_at or run.updated_at
    return {
        "id": run.id,
        "service": run.service,
        "kind": run.kind,
        "status": status,
        "from_site": run.plan.get("from_site"),
        "to_site": run.plan.get("to_site"),
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "finished_at": run.finished_at,
        "duration_s": end - run.created_at,
        "steps_total": len(steps),
        "steps_done": done,
        "current_step": current if run.finished_at is None else None,
        "error": run.error,
        "hint": run.hint,
        "measurements": headline(journal.measurements(run.id)),
    }
