"""JSON documents the read endpoints and the event stream share (no decisions here).

Everything shown comes from failback.engine.status (observation) and
failback.report (journal); this module only assembles and trims documents, e.g.
keeps step parameters out of plans (a command line may carry anything).
"""

from __future__ import annotations

from typing import Any

from failback.engine.executor import Executor
from failback.engine.journal import Journal, RunRecord
from failback.report.build import build_report
from failback.report.summary import run_summary

_PUBLIC_PARAMS = ("question", "window_s", "use")


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
    }


def runs_list(journal: Journal, *, service: str | None, limit: int) -> list[dict[str, Any]]:
    executor = Executor(journal)
    return [
        run_summary(journal, r, executor.effective_status(r))
        for r in journal.list_runs(service=service, limit=limit)
    ]


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
        "file": str(topology.path),
        "sites": {name: {"description": s.description} for name, s in topology.sites.items()},
        "services": services,
    }
