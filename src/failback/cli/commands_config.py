"""validate, schema, status, plan: commands that read and never change anything."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from failback.cli.context import config_path, load
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt
from failback.cli.output import emit_json, stdout
from failback.config.journal import journal_for
from failback.engine.starter import make_plan, make_plan_artefact
from failback.errors import FailbackError
from failback.model.plan import Plan
from failback.plan.artefact import PlanOptions, write_artefact

OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Also write the plan to FILE (mode 0600), to run exactly it later with "
        "`failback KIND SERVICE --plan FILE`; an existing plan file is replaced",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("status")(status)
    plan_app = typer.Typer(
        help="Print the plan of a run without changing anything.", no_args_is_help=True
    )
    plan_app.command("failover")(plan_failover_cmd)
    plan_app.command("failback")(plan_failback_cmd)
    app.add_typer(plan_app, name="plan")


def validate(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files to check [default: the topology file]")
    ] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Check topology files; list every problem as FILE:LINE: key: message.

    Warnings (FILE:LINE: key: warning: message) point at what is valid but unsafe
    after a crash; they go to stderr and leave the exit code 0.
    """
    from failback.config import ConfigError, load_topology

    paths = files or [config_path(config)]
    results: list[dict[str, Any]] = []
    warned: list[Any] = []
    for path in paths:
        try:
            topology = load_topology(path)
        except ConfigError as exc:
            results.append(
                {
                    "file": str(path),
                    "valid": False,
                    "problems": [p.to_dict() for p in exc.problems],
                    "warnings": [],
                }
            )
            continue
        results.append(
            {
                "file": str(path),
                "valid": True,
                "problems": [],
                "warnings": [w.to_dict() for w in topology.warnings],
                "services": list(topology.services),
            }
        )
        warned.extend(topology.warnings)
    bad = [r for r in results if not r["valid"]]
    if as_json:
        emit_json({"valid": not bad, "files": results})
    else:
        from failback.cli.output import stderr

        print_warnings(warned)
        for result in results:
            if result["valid"]:
                stdout.print(
                    f"{result['file']}: valid ({len(result['services'])} service(s))",
                    markup=False,
                    highlight=False,
                )
            else:
                for problem in result["problems"]:
                    stderr.print(_problem_line(problem), markup=False, highlight=False)
                stderr.print(
                    f"{result['file']}: {len(result['problems'])} problem(s)",
                    style="bold red",
                    markup=False,
                    highlight=False,
                )
    return 2 if bad else 0


def _problem_line(problem: dict[str, Any]) -> str:
    where = problem["file"] + (f":{problem['line']}" if problem.get("line") else "")
    line = (
        f"{where}: {problem['key']}: {problem['message']}"
        if problem.get("key")
        else (f"{where}: {problem['message']}")
    )
    if problem.get("hint"):
        line += f" (hint: {problem['hint']})"
    return line


def print_warnings(warnings: list[Any]) -> None:
    """``FILE:LINE: key: warning: message (hint: ...)`` on stderr, one a line."""
    from failback.cli.output import stderr

    for warning in warnings:
        stderr.print(warning.render(), style="yellow", markup=False, highlight=False)


def plan_warnings(topology: Any, plan: Plan) -> list[Any]:
    """The topology's warnings about the steps of ``plan`` (same component, site, action)."""
    steps = {(s.component, s.site, s.params.get("action")) for s in plan.steps}
    return [
        w
        for w in topology.warnings
        if w.service == plan.service and (w.component, w.site, w.action) in steps
    ]


def schema(as_json: JsonOpt = False) -> int:
    """Print the JSON Schema of the topology file (for editors)."""
    from failback.config import topology_json_schema

    document = topology_json_schema()
    print(json.dumps(document, indent=2))
    return 0


def status(
    service: Annotated[str | None, typer.Argument(help="One service [default: all]")] = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Where each service runs, each component's role and health, runs in progress."""
    from failback.engine.executor import Executor
    from failback.monitor.liveness import status_lines
    from failback.status.document import service_status

    topology = load(config)
    journal = journal_for(topology, state_dir)
    names = [topology.service(service).name] if service else list(topology.services)
    executor = Executor(journal)
    with topology.open_hosts() as hosts:
        documents = [service_status(hosts, topology, n, journal, executor) for n in names]
    if as_json:
        emit_json({"services": documents})
        return 0
    for doc in documents:
        label = "DEGRADED" if doc["degraded"] else "home"
        stdout.print(
            f"[bold]{doc['service']}[/]: active at [bold]{doc['active_site']}[/]"
            f" (primary site {doc['primary_site']}, {label})"
        )
        if doc["needs_resync"]:
            stdout.print(f"  needs resync: {', '.join(doc['needs_resync'])}")
        if doc.get("after_incident"):
            stdout.print(incident_line(doc), markup=False, highlight=False)
        if doc["current_run"]:
            r = doc["current_run"]
            stdout.print(f"  run {r['id']} ({r['kind']}) is {r['status']}")
            if r.get("undo_until"):
                until = time.strftime("%H:%M:%S", time.localtime(r["undo_until"]))
                stdout.print(
                    f"  run {r['id']} can be undone until {until}: failback abort {r['id']}"
                    " switches back with no lost write",
                    markup=False,
                )
        table = Table()
        for col in ("component", "site", "driver", "role", "healthy", "detail"):
            table.add_column(col)
        for c in doc["components"]:
            role = c["role"]
            style = "red" if role in ("stale-primary", "down") else None
            table.add_row(
                c["component"],
                c["site"],
                c["driver"],
                f"[{style}]{role}[/]" if style else role,
                "yes" if c["healthy"] else "[red]no[/]",
                c["detail"],
            )
        stdout.print(table)
        for line in status_lines(doc):
            stdout.print(line, markup=False, highlight=False)
        stdout.print(drill_line(doc["drill"]), markup=False, highlight=False)
    return 0


def incident_line(doc: dict[str, Any]) -> str:
    """``after_incident (reason, by root at ...): the next failback stops at the clean room``."""
    from failback.baseline.compare import when

    mark = doc["after_incident"]
    why = f"{mark.get('reason')}, " if mark.get("reason") else ""
    baseline = (
        f"baseline of {doc['primary_site']} recorded {when(doc['baseline_recorded_at'])}"
        if doc.get("baseline_recorded_at")
        else f"NO baseline of {doc['primary_site']}: a failback is refused"
    )
    return (
        f"  after_incident ({why}marked by {mark.get('by')} at {when(mark.get('at'))}): the"
        f" next failback stops at the clean_room gate; {baseline}"
    )


def drill_line(drill: dict[str, Any]) -> str:
    """``drill: last 2h05m ago at dc2, succeeded (RTO 1.42s); ...`` for ``status``."""
    from failback.cli.output import fmt_duration
    from failback.monitor.decide import human

    last = drill["last"]
    if last is None:
        text = "drill: never drilled (`failback drill SERVICE`)"
    else:
        rto = f", RTO {fmt_duration(last['rto_s'])}" if last["rto_s"] is not None else ""
        text = (
            f"drill: last run {last['id']} {human(last['age_s'])} ago at {last['site']},"
            f" {last['status']}{rto}"
        )
        success = drill["last_success"]
        if last["status"] != "succeeded" and success is not None:
            text += f"; last success {human(success['age_s'])} ago (run {success['id']})"
    if drill["require_within_s"] is not None:
        verdict = "met" if drill["requirement_met"] else "NOT met: automatic failback waits"
        text += f"; policy: {drill['reason']}: {verdict}"
    return text


def print_plan(
    plan: Plan,
    *,
    as_json: bool,
    warnings: list[Any] | None = None,
    plan_file: Path | None = None,
) -> None:
    """The plan, step by step (or as JSON); ``plan_file`` is where it was written."""
    if as_json:
        document: dict[str, Any] = {"plan": plan.model_dump(mode="json")}
        if warnings is not None:
            document["warnings"] = [w.to_dict() for w in warnings]
        if plan_file is not None:
            document["plan_file"] = str(plan_file)
        emit_json(document)
        return
    print_warnings(warnings or [])
    stdout.print(
        f"[bold]{plan.kind}[/] of [bold]{plan.service}[/]: {plan.from_site} -> "
        f"{plan.to_site} ({len(plan.steps)} steps)"
    )
    for idx, step in enumerate(plan.steps, 1):
        marks = []
        if step.kind == "gate":
            marks.append("gate")
        if step.point_of_no_return:
            marks.append("point of no return")
        suffix = f"  [dim]({', '.join(marks)})[/]" if marks else ""
        stdout.print(f"  {idx:2d}. {step.title}{suffix}", highlight=False)
        if step.why:
            stdout.print(f"      [dim]why: {step.why}[/]", highlight=False)
    for note in plan.notes:
        stdout.print(f"  note: {note}", highlight=False)
    if plan_file is not None:
        stdout.print(
            f"plan written to {plan_file}; run exactly it with: failback {plan.kind} "
            f"{plan.service} --plan {plan_file}",
            markup=False,
            highlight=False,
        )


def plan_failover_cmd(
    service: Annotated[str, typer.Argument(help="Service to plan for")],
    planned: Annotated[
        bool,
        typer.Option(
            "--planned", help="Planned (zero-loss) move for maintenance of the active site"
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Plan even if the active site is healthy")
    ] = False,
    accept_data_loss: Annotated[
        bool,
        typer.Option(
            "--accept-data-loss",
            help="Plan a failover to a site that was never resynced, losing the writes it lacks",
        ),
    ] = False,
    out: OutOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Print the failover plan of SERVICE (changes nothing but the --out file)."""
    options = PlanOptions(planned=planned, force=force, accept_data_loss=accept_data_loss)
    return _plan("failover", service, options, out, config, state_dir, as_json)


def plan_failback_cmd(
    service: Annotated[str, typer.Argument(help="Service to plan for")],
    out: OutOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Print the failback plan of SERVICE (changes nothing but the --out file)."""
    return _plan("failback", service, PlanOptions(), out, config, state_dir, as_json)


def _plan(
    kind: str,
    service: str,
    options: PlanOptions,
    out: Path | None,
    config: Path | None,
    state_dir: Path | None,
    as_json: bool,
) -> int:
    """Print the plan; with ``out``, write it first (with what it was made from)."""
    topology = load(config)
    journal = journal_for(topology, state_dir)
    if out is None:
        plan = make_plan(kind, service, topology, journal, **options.as_planner_options())
        print_plan(plan, as_json=as_json, warnings=plan_warnings(topology, plan))
        return 0
    artefact = make_plan_artefact(kind, service, topology, journal, options)
    written = write_artefact(out, artefact)
    print_plan(
        artefact.plan,
        as_json=as_json,
        warnings=plan_warnings(topology, artefact.plan),
        plan_file=written,
    )
    return 0


__all__ = ["FailbackError", "make_plan", "print_plan", "register"]
