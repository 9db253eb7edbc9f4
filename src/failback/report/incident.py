"""What a post-incident report holds, gathered from the journal (``failback report``).

One document per run: the header (service, kind, sites, status, who started and who
approved what, when), the timeline, every step with its timing and a summary of its
output, the measurements, the events, the diverged data when a failback captured some,
and the service's drills around the run. ``report/render.py`` turns it into Markdown or
HTML; nothing here formats.

Step outputs, events and captured rows may hold anything a command printed or a client
wrote, secrets included: the whole document passes through the project's ``Redactor``
(the API token and every secret the topology refers to are masked) before anyone
renders it.
"""

from __future__ import annotations

import json
from typing import Any

from failback.model.locks import DRILL_KIND
from failback.model.secrets import Redactor
from failback.report.build import build_report
from failback.report.diverged import changes_json, diverged_line
from failback.report.drills import drill_row, list_drills
from failback.report.timeline import timeline_for
from failback.store import Journal

OUTPUT_CHARS = 1500
"""At most this much of a step's output (as JSON) is shown: a summary, not a log."""


def incident_document(
    journal: Journal, run_id: int, *, redactor: Redactor, status: str | None = None
) -> dict[str, Any]:
    """Everything the report shows of ``run_id``, redacted (StateError: unknown run).

    ``status`` is the run's effective status when the caller knows it (the engine
    computes ``interrupted``)."""
    run = journal.get_run(run_id)
    report = build_report(journal, run_id)
    if status is not None:
        report["status"] = status
    timeline = timeline_for(journal, run_id, status=status)
    specs = {s["id"]: s for s in run.plan.get("steps", [])}
    for step in report["steps"]:
        spec = specs.get(step["id"], {})
        step["kind"] = spec.get("kind", "action")
        step["site"] = spec.get("site")
        step["component"] = spec.get("component")
        step["point_of_no_return"] = bool(spec.get("point_of_no_return"))
        step["output_summary"] = output_summary(step.get("output"))
    summary = run.values.get("diverged")
    capture = journal.diverged(run_id)
    diverged = None
    if summary is not None or capture is not None:
        merged = {**(summary or {}), **(capture or {})}
        diverged = {
            "line": diverged_line(run_id, merged),
            "summary": {k: v for k, v in merged.items() if k != "changes"},
            "changes": changes_json(merged),
        }
    document = {
        "run": {
            "id": run.id,
            "service": run.service,
            "kind": run.kind,
            "status": report["status"],
            "from_site": report["from_site"],
            "to_site": report["to_site"],
            "started_at": run.created_at,
            "finished_at": run.finished_at,
            "duration_s": report["duration_s"],
            "started_by": run.options.get("started_by") or run.options.get("by"),
            "error": run.error,
            "hint": run.hint,
            "rollback": report.get("rollback"),
            "plan_file": run.options.get("plan_file"),
        },
        "approvals": [a.model_dump() for a in timeline.approvals],
        "timeline": timeline.model_dump(mode="json"),
        "steps": report["steps"],
        "measurements": report["measurements"],
        "events": journal.events(run_id=run_id, limit=100_000),
        "diverged": diverged,
        "drills": _drills(journal, run.service, run.id, run.kind, run.created_at),
    }
    return redacted(document, redactor)


def redacted(document: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """``document`` with every known secret masked, wherever it sits (one pass over its
    JSON text: the Redactor also knows how a secret looks inside a JSON string)."""
    return dict(json.loads(redactor.text(json.dumps(document))))


def output_summary(output: Any) -> str | None:
    """A step's output as short JSON text (cut at ``OUTPUT_CHARS``), or None."""
    if not output:
        return None
    text = json.dumps(output, indent=1, sort_keys=True, default=str)
    if len(text) > OUTPUT_CHARS:
        text = text[:OUTPUT_CHARS] + f"\n… ({len(text) - OUTPUT_CHARS} more characters)"
    return text


def _drills(
    journal: Journal, service: str, run_id: int, kind: str, started_at: float
) -> dict[str, Any]:
    """A drill run's own figures, or the service's last drill before this run: when it
    was rehearsed, and whether it worked, is part of an incident's story."""
    rows = [drill_row(r, started_at) for r in list_drills(journal, service=service, limit=50)]
    before = [r for r in rows if r["id"] < run_id]
    return {
        "this_run": next((r for r in rows if r["id"] == run_id), None)
        if kind == DRILL_KIND
        else None,
        "last_before": before[0] if before else None,
        "last_success_before": next((r for r in before if r["status"] == "succeeded"), None),
    }
