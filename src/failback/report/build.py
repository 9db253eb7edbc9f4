"""Build a run's report from the journal alone (promise 4: measured, not estimated).

Because it reads only the journal, the report of a run whose process died is
built the same way as one that finished in a single process.
"""

from __future__ import annotations

from typing import Any

from failback.store import Journal


def build_report(journal: Journal, run_id: int) -> dict[str, Any]:
    run = journal.get_run(run_id)
    steps_by_id = {step["id"]: step for step in run.plan.get("steps", [])}
    steps = []
    for record in journal.steps(run_id):
        spec = steps_by_id.get(record.step_id, {})
        duration = (
            record.finished_at - record.started_at
            if record.finished_at is not None and record.started_at is not None
            else None
        )
        steps.append(
            {
                "id": record.step_id,
                "title": spec.get("title", record.step_id),
                "status": record.status,
                "started_at": record.started_at,
                "finished_at": record.finished_at,
                "duration_s": duration,
                "attempts": record.attempts,
                "error": record.error,
                "undo": record.undo_status,
                "output": record.output or None,
            }
        )
    end = run.finished_at or run.updated_at
    return {
        "run_id": run.id,
        "service": run.service,
        "kind": run.kind,
        "status": run.status,
        "from_site": run.plan.get("from_site"),
        "to_site": run.plan.get("to_site"),
        "started_at": run.created_at,
        "finished_at": run.finished_at,
        "duration_s": end - run.created_at,
        "error": run.error,
        "hint": run.hint,
        # set once the run turned backward: why, and how it ends when every undo succeeded
        "rollback": run.values.get("rollback"),
        "steps": steps,
        "measurements": journal.measurements(run_id),
        # what the returning site committed after the fork (a failback's capture step)
        "diverged": run.values.get("diverged"),
    }
