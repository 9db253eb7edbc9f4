"""JSON documents the read endpoints and the event stream share (no decisions here).

Everything shown comes from failback.status.document (observation) and
failback.report (journal); this module only assembles and trims documents, e.g.
keeps step parameters out of plans (a command line may carry anything).
"""

from __future__ import annotations

import time
from typing import Any

from failback.engine.executor import Executor
from failback.report.build import build_report
from failback.report.drills import drill_row, list_drills
from failback.report.summary import run_summary
from failback.report.timeline import Timeline, timeline_for
from failback.store import Journal, RunRecord

_PUBLIC_PARAMS = ("question", "window_s", "use")
COMMAND_DETAILS = frozenset({"command", "stdout", "stderr"})
"""Keys of a command's record (failback.drivers.command.runner.result_output) that only
an authenticated caller sees: a command line or its output may carry anything."""


def without_command_details(value: Any) -> Any:
    """``value`` with every ``command``/``stdout``/``stderr`` key removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_command_details(v) for k, v in value.items() if k not in COMMAND_DETAILS}
    if isinstance(value, list):
        return [without_command_details(v) for v in value]
    return value


def report_for(report: dict[str, Any], authenticated: bool) -> dict[str, Any]:
    """A run's report for this caller: step outputs keep their command lines and
    outputs only for an authenticated one."""
    if authenticated:
        return report
    steps = [
        {**step, "output": without_command_details(step.get("output"))}
        for step in report.get("steps", [])
    ]
    return {**report, "steps": steps}


def run_for(doc: dict[str, Any], authenticated: bool) -> dict[str, Any]:
    """A ``run_document`` for this caller (see ``report_for``)."""
    return doc if authenticated else {**doc, "report": report_for(doc["report"], False)}


def event_for(event: dict[str, Any], authenticated: bool) -> dict[str, Any]:
    """A journal event for this caller: its data without command details, unless
    authenticated (``command.output`` events carry a command's line and output)."""
    if authenticated or not isinstance(event.get("data"), dict | list):
        return event
    return {**event, "data": without_command_details(event["data"])}


def public_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan without step parameters, except the harmless ones a person reads."""
    steps = []
    for step in plan.get("steps", []):
        params = step.get("params") or {}
        steps.append(
            {
                **{k: v for k, v in step.items() if k != "params"},
                "params": {k: params[k] for k in _PUBLIC_PARAMS if k in params},
            }
        )
    return {**plan, "steps": steps}


def run_document(journal: Journal, run: RunRecord) -> dict[str, Any]:
    """One run: its summary, report (steps with durations), plan and waiting gate."""
    status = Executor(journal).effective_status(run)
    report = build_report(journal, run.id)
    report["status"] = status
    plan = public_plan(run.plan)
    titles = {s["id"]: s for s in plan["steps"]}
    for step in report["steps"]:
        spec = titles.get(step["id"], {})
        step["kind"] = spec.get("kind", "action")
        step["point_of_no_return"] = bool(spec.get("point_of_no_return"))
        step["site"] = spec.get("site")
    waiting = next((s for s in report["steps"] if s["status"] == "waiting"), None)
    gate = None
    if waiting is not None and status == "waiting-approval":
        question = titles.get(waiting["id"], {}).get("params", {}).get("question")
        gate = {"step": waiting["id"], "title": waiting["title"], "question": question}
    return {
        "run": run_summary(journal, run, status),
        "report": report,
        "plan": plan,
        "waiting_gate": gate,
        "write_window": write_window(run),
    }


def write_window(run: RunRecord) -> dict[str, float | None] | None:
    """When this run's clients could not write: from the first router refusing writes
    (``writes_stopped_at.SITE``, journaled before it acts) to the last one sending them
    to a site again (``writes_resumed_at`` / ``writes_restored_at``); ``end`` is None
    while the window is open. None when the run never stopped writes. For the console's
    timeline; the measured length is the report's ``write_unavailability_s``."""
    values = run.values

    def times(prefix: str) -> list[float]:
        return [float(v) for k, v in values.items() if k.startswith(prefix) and v is not None]

    stopped = times("writes_stopped_at.")
    if not stopped:
        return None
    ended = times("writes_resumed_at.") + times("writes_restored_at.")
    return {"start": min(stopped), "end": max(ended) if ended else None}


def run_timeline(journal: Journal, run: RunRecord) -> Timeline:
    """The run over time (``failback.report.timeline``) with its effective status."""
    return timeline_for(journal, run.id, status=Executor(journal).effective_status(run))


def runs_list(journal: Journal, *, service: str | None, limit: int) -> list[dict[str, Any]]:
    executor = Executor(journal)
    return [
        run_summary(journal, r, executor.effective_status(r))
        for r in journal.list_runs(service=service, limit=limit)
    ]


def drills_list(journal: Journal, *, service: str | None, limit: int) -> list[dict[str, Any]]:
    """``failback drills --json``: each drill's site, status, RTO and age."""
    executor = Executor(journal)
    now = time.time()
    rows = []
    for run in list_drills(journal, service=service, limit=limit):
        row = drill_row(run, now)
        row["status"] = executor.effective_status(run)
        rows.append(row)
    return rows


def topology_document(topology: Any) -> dict[str, Any]:
    """Sites, services, components (driver and sites), checks and policy: no options.

    Options hold connection details and secret references, and commands may carry
    anything, so they stay out; ``failback validate`` is the place to inspect them.
    """
    services = {}
    for name, svc in topology.services.items():
        services[name] = {
            "primary_site": svc.primary_site,
            "sites": svc.sites,
            "description": svc.description,
            "components": {
                cname: {
                    "driver": comp.driver,
                    "description": comp.description,
                    "sites": comp.site_names,
                }
                for cname, comp in svc.components.items()
            },
            "checks": [
                {"name": c.name, "type": c.type, "use": list(c.use), "site": c.site}
                for c in svc.checks
            ],
            "policy": svc.policy.model_dump(mode="json"),
        }
    return {
        "file": topology.path.name,  # the name only: where it lives is no client's business
        "sites": {name: {"description": s.description} for name, s in topology.sites.items()},
        "services": services,
    }
