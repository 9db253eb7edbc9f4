"""failover, failback, runs, run show, resume, abort, approve: commands that run plans."""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from failback.cli.commands_config import print_plan
from failback.cli.confirm import confirm
from failback.cli.context import journal_from_options, load
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt, YesOpt
from failback.cli.output import (
    emit_json,
    fmt_duration,
    fmt_time,
    measurements_table,
    report_table,
    stderr,
    stdout,
)
from failback.config.journal import journal_for
from failback.engine.executor import Executor, RunOutcome, refuse_ended, refuse_forward
from failback.engine.starter import create_run, make_plan, plan_to_apply
from failback.errors import UsageError
from failback.model.states import TERMINAL
from failback.plan.artefact import read_artefact
from failback.report.diverged import diverged_line
from failback.store import Journal

RunIdArg = Annotated[int, typer.Argument(help="Run id (see `failback runs`)")]
PlanFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Run exactly the plan saved by `failback plan KIND SERVICE --out FILE`, after "
        "checking that the topology and what is observed still match it",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.command("failover")(failover)
    app.command("failback")(failback)
    app.command("runs")(runs)
    run_app = typer.Typer(help="Look at one run.", no_args_is_help=True)
    run_app.command("show")(run_show)
    app.add_typer(run_app, name="run")
    app.command("resume")(resume)
    app.command("abort")(abort)
    app.command("approve")(approve)


def _executor(journal: Journal, as_json: bool) -> Executor:
    if as_json:
        return Executor(journal)
    from failback.cli.progress import TerminalReporter

    return Executor(journal, reporter=TerminalReporter())


ENDED = frozenset(str(status.value) for status in TERMINAL)
REPORT_WAIT_S = 10.0


def finish(journal: Journal, outcome: RunOutcome, *, as_json: bool) -> int:
    """Print the outcome (and the report when the run ended); return the exit code."""
    run = journal.get_run(outcome.run_id)
    # an abort or approve from this process can see the run end a moment before the
    # process executing it has written its report: wait for it, briefly
    deadline = time.monotonic() + REPORT_WAIT_S
    while run.report is None and outcome.status in ENDED and time.monotonic() < deadline:
        time.sleep(0.05)
        run = journal.get_run(outcome.run_id)
    if as_json:
        emit_json(
            {
                "run_id": run.id,
                "status": outcome.status,
                "error": outcome.error,
                "hint": outcome.hint,
                "report": run.report,
            }
        )
        return outcome.exit_code
    if outcome.status == "waiting-approval":
        stderr.print(
            f"run {run.id} waits for approval: {outcome.error}", style="yellow", markup=False
        )
        stderr.print(
            f"approve with: failback approve {run.id}    (or abort: failback abort {run.id})",
            markup=False,
        )
        return outcome.exit_code
    if run.report:
        stdout.print(report_table(run.report))
        table = measurements_table(run.report)
        if table is not None:
            stdout.print(table)
        if run.report.get("diverged"):
            stdout.print(
                diverged_line(run.id, run.report["diverged"]), markup=False, highlight=False
            )
    if outcome.status == "succeeded":
        stdout.print(f"[green]run {run.id} succeeded[/]")
    else:
        stderr.print(
            f"run {run.id} {outcome.status}: {outcome.error}", style="bold red", markup=False
        )
        if outcome.hint:
            stderr.print(f"hint: {outcome.hint}", style="yellow", markup=False)
    return outcome.exit_code


def _start(
    kind: str,
    service: str,
    config: Any,
    state_dir: Any,
    as_json: bool,
    yes: bool,
    plan_file: Path | None = None,
    **plan_options: Any,
) -> int:
    if plan_file is not None:
        return _apply(kind, service, plan_file, config, state_dir, as_json, yes, plan_options)
    topology = load(config)
    journal = journal_for(topology, state_dir)
    plan = make_plan(kind, service, topology, journal, **plan_options)
    if not as_json:
        print_plan(plan, as_json=False)
    confirm(f"Start the {kind} of {service} from {plan.from_site} to {plan.to_site}?", yes)
    executor = _executor(journal, as_json)
    run_id = create_run(executor, topology, plan, **plan_options, started_by=getpass.getuser())
    if not as_json:
        stderr.print(f"run {run_id} started", markup=False)
    return finish(journal, executor.execute(run_id), as_json=as_json)


def _apply(
    kind: str,
    service: str,
    plan_file: Path,
    config: Any,
    state_dir: Any,
    as_json: bool,
    yes: bool,
    given: dict[str, Any],
) -> int:
    """Run exactly the saved plan, or refuse (one line + hint) having changed nothing.

    Options that would change the plan are refused with ``--plan``: the file carries
    the options it was planned with, and a person reviewed the plan they gave.
    """
    clashing = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if clashing:
        raise UsageError(
            f"{', '.join(clashing)} cannot be given with --plan: the plan file carries the"
            " options it was planned with",
            hint=f"make a new plan with them: failback plan {kind} {service}"
            f" {' '.join(clashing)} --out {plan_file}",
        )
    artefact = read_artefact(plan_file)
    topology = load(config)
    journal = journal_for(topology, state_dir)
    plan = plan_to_apply(
        artefact, plan_file, kind=kind, service=service, topology=topology, journal=journal
    )
    if not as_json:
        print_plan(plan, as_json=False)
        stderr.print(
            f"{plan_file} still holds: made {fmt_time(artefact.created_at)} by"
            f" {artefact.created_by}; the topology and what is observed are unchanged",
            markup=False,
            highlight=False,
        )
    confirm(f"Start the {kind} of {service} from {plan.from_site} to {plan.to_site}?", yes)
    executor = _executor(journal, as_json)
    run_id = create_run(
        executor,
        topology,
        plan,
        **artefact.options.model_dump(exclude_none=True),
        plan_file=str(plan_file.absolute()),
        plan_digest=artefact.digest,
        started_by=getpass.getuser(),
    )
    if not as_json:
        stderr.print(f"run {run_id} started", markup=False)
    return finish(journal, executor.execute(run_id), as_json=as_json)


def failover(
    service: Annotated[str, typer.Argument(help="Service to move to its secondary site")],
    planned: Annotated[
        bool,
        typer.Option("--planned", help="Zero-loss move for maintenance of a healthy active site"),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Fail over even though the active site looks healthy")
    ] = False,
    accept_data_loss: Annotated[
        bool,
        typer.Option(
            "--accept-data-loss",
            help="Fail over to a site that was never resynced, losing the writes it lacks",
        ),
    ] = False,
    plan_file: PlanFileOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Move SERVICE from its active site to the other site."""
    return _start(
        "failover",
        service,
        config,
        state_dir,
        as_json,
        yes,
        plan_file,
        planned=planned,
        force=force,
        accept_data_loss=accept_data_loss,
    )


def failback(
    service: Annotated[str, typer.Argument(help="Service to bring home to its primary site")],
    accept_data_loss: Annotated[
        bool,
        typer.Option(
            "--accept-data-loss",
            help="Resync the returning site even when what it committed after the failover"
            " cannot be captured first (instead of asking)",
        ),
    ] = False,
    plan_file: PlanFileOpt = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Bring SERVICE back to its primary site: capture, resync, validate, switch, re-protect."""
    return _start(
        "failback", service, config, state_dir, as_json, yes, plan_file,
        accept_data_loss=accept_data_loss,
    )  # fmt: skip


def runs(
    service: Annotated[str | None, typer.Option("--service", help="Only this service")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first")] = 20,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """List runs, newest first."""
    journal = journal_from_options(config, state_dir)
    executor = Executor(journal)
    records = journal.list_runs(service=service, limit=limit)
    rows = [
        {
            "id": r.id,
            "service": r.service,
            "kind": r.kind,
            "status": executor.effective_status(r),
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "from_site": r.plan.get("from_site"),
            "to_site": r.plan.get("to_site"),
            "error": r.error,
        }
        for r in records
    ]
    if as_json:
        emit_json({"runs": rows})
        return 0
    table = Table()
    for col in ("id", "service", "kind", "route", "status", "started", "duration"):
        table.add_column(col)
    for r, row in zip(records, rows, strict=True):
        end = r.finished_at or r.updated_at
        table.add_row(
            str(r.id),
            r.service,
            r.kind,
            f"{row['from_site']} -> {row['to_site']}",
            row["status"],
            fmt_time(r.created_at),
            fmt_duration(end - r.created_at),
        )
    stdout.print(table)
    return 0


def run_show(
    run_id: RunIdArg,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Stream the run's steps and events until it ends (one JSON object per line"
            " with --json); exit with the run's code. Ctrl-C stops following, not the run",
        ),
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Show one run: its steps, outputs, measurements and events."""
    from failback.report.build import build_report

    journal = journal_from_options(config, state_dir)
    if follow:
        from failback.cli.follow import follow as follow_run

        return follow_run(journal, run_id, as_json=as_json)
    run = journal.get_run(run_id)
    status = Executor(journal).effective_status(run)
    report = build_report(journal, run_id)
    report["status"] = status
    events = journal.events(run_id=run_id)
    if as_json:
        emit_json({"run": report, "events": events, "plan": run.plan,
                   "diverged": report.get("diverged")})  # fmt: skip
        return 0
    stdout.print(report_table(report))
    table = measurements_table(report)
    if table is not None:
        stdout.print(table)
    if report.get("diverged"):
        stdout.print(diverged_line(run_id, report["diverged"]), markup=False, highlight=False)
    if run.error:
        stdout.print(f"error: {run.error}", markup=False)
    if run.hint:
        stdout.print(f"hint: {run.hint}", markup=False)
    stdout.print("[bold]events[/]")
    for event in events[-40:]:
        stdout.print(
            f"  {fmt_time(event['ts'])} {event['kind']:<16} {event['message']}",
            markup=False,
            highlight=False,
        )
    return 0


def resume(
    run_id: RunIdArg,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="Continue with the edited topology file (validated; the steps left must fit)",
        ),
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Continue an interrupted or failed run where it stopped (no step is repeated).

    A run continues with the copy of the topology file saved when it started; after
    editing the file (say, to raise a timeout), `--reload` validates the edited file,
    checks that the steps left still fit it, and continues with it.
    """
    journal = journal_from_options(config, state_dir)
    run = journal.get_run(run_id)
    refuse_ended(run)  # said before the question: nothing to confirm
    refuse_forward(run)
    path = Path(config) if config is not None else Path(run.topology_path)
    edited = _read_if_possible(path)
    topology = None
    if reload:
        topology = load(path)
    elif edited is not None and edited != run.topology_text:
        stderr.print(
            f"note: {path} changed since run {run_id} started; the run continues with the "
            f"copy saved then (to use the edited file: failback resume {run_id} --reload)",
            style="yellow",
            markup=False,
        )
    confirm(f"Continue run {run_id} ({run.kind} of {run.service}) where it stopped?", yes)
    executor = _executor(journal, as_json)
    return finish(journal, executor.resume(run_id, reload=topology), as_json=as_json)


def _read_if_possible(path: Path) -> str | None:
    """The file's text, or None when it cannot be read (the saved copy is used anyway)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def abort(
    run_id: RunIdArg,
    force: Annotated[
        bool, typer.Option("--force", help="End a run past its point of no return without undo")
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Stop a run and undo what it changed, back to a safe state."""
    journal = journal_from_options(config, state_dir)
    refuse_ended(journal.get_run(run_id))  # said before the question: nothing to confirm
    confirm(f"Abort run {run_id} and undo its steps?", yes)
    outcome = _executor(journal, as_json).abort(run_id, force=force)
    code = finish(journal, outcome, as_json=as_json)
    return 0 if outcome.status in ("aborted", "rolled-back") else code


def approve(
    run_id: RunIdArg,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Approve the gate a run waits at, then continue the run."""
    journal = journal_from_options(config, state_dir)
    run = journal.get_run(run_id)
    confirm(f"Approve the gate run {run_id} ({run.kind} of {run.service}) waits at?", yes)
    executor = _executor(journal, as_json)
    step = executor.approve(run_id, getpass.getuser())
    if not as_json:
        stderr.print(f"{step} approved; continuing run {run_id}", markup=False)
    return finish(journal, executor.execute(run_id), as_json=as_json)
