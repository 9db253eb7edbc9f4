"""``failback drill`` and ``failback drills``: rehearse a takeover, list the rehearsals.

A drill is a run like any other (``run show``, ``resume``, ``abort``); these commands
only start one and list them. See docs/drills.md.
"""

from __future__ import annotations

import getpass
import time
from typing import Annotated

import typer
from rich.table import Table

from failback.cli.commands_config import print_plan
from failback.cli.commands_runs import _executor, finish
from failback.cli.confirm import confirm
from failback.cli.context import journal_from_options, load
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt, YesOpt
from failback.cli.output import emit_json, fmt_duration, fmt_time, stderr, stdout
from failback.config.journal import journal_for
from failback.engine.drill_starter import create_drill_run, keep_for_seconds, make_drill_plan
from failback.engine.executor import Executor
from failback.errors import UsageError
from failback.monitor.decide import human
from failback.report.drills import drill_row, list_drills

DEFAULT_KEEP = "0s"
"""A drill nobody watches keeps nothing running: the copy is removed as soon as it has
proved what it proves. ``--keep-for 10m`` keeps it for a person to look at."""


def register(app: typer.Typer) -> None:
    app.command("drill")(drill)
    app.command("drills")(drills)


def drill(
    service: Annotated[str, typer.Argument(help="Service whose standby is rehearsed")],
    site: Annotated[
        str | None,
        typer.Option("--site", help="Site whose standby is copied [default: the standby's]"),
    ] = None,
    keep_for: Annotated[
        str,
        typer.Option(
            "--keep-for", help="How long the promoted copy stays up for a person to look at"
        ),
    ] = DEFAULT_KEEP,
    directory: Annotated[
        str | None,
        typer.Option(
            "--dir",
            help="Directory on the standby's machine the copy goes in [default: beside its"
            " data directory]",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Prove the standby could take over, without touching production: copy it, start
    the copy isolated, promote it, write to it, run the checks against it, remove it."""
    keep = keep_for_seconds(keep_for)
    if directory is not None and not directory.startswith("/"):
        raise UsageError(
            f"--dir {directory!r} is not an absolute path",
            hint="a directory on the standby's machine, e.g. --dir /srv/scratch",
        )
    topology = load(config)
    journal = journal_for(topology, state_dir)
    plan, found = make_drill_plan(
        service, topology, journal, site=site, keep_for_s=keep, parent=directory
    )
    if not as_json:
        print_plan(plan, as_json=False)
        for name, sizes in found.items():
            mb = 1024 * 1024
            stderr.print(
                f"{name}: the copy needs about {sizes['need_bytes'] // mb} MB on {plan.to_site}'s"
                f" machine, {sizes['available_bytes'] // mb} MB are free",
                markup=False,
                highlight=False,
            )
    confirm(f"Start a drill of {service} at {plan.to_site}?", yes)
    executor = _executor(journal, as_json)
    run_id = create_drill_run(
        executor, topology, plan, keep_for_s=keep, parent=directory, by=getpass.getuser()
    )
    if not as_json:
        stderr.print(f"drill {run_id} started", markup=False)
    return finish(journal, executor.execute(run_id), as_json=as_json)


def drills(
    service: Annotated[str | None, typer.Argument(help="Only this service")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first")] = 20,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """List drills, newest first: site, status, RTO, age."""
    if service is not None and state_dir is None:
        topology = load(config)
        topology.service(service)  # an unknown service: one line with a suggestion
        journal = journal_for(topology, None)
    else:
        journal = journal_from_options(config, state_dir)
    executor = Executor(journal)
    now = time.time()
    rows = []
    for run in list_drills(journal, service=service, limit=limit):
        row = drill_row(run, now)
        row["status"] = executor.effective_status(run)
        rows.append(row)
    if as_json:
        emit_json({"drills": rows})
        return 0
    table = Table()
    for col in ("id", "service", "site", "status", "started", "RTO", "age"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["service"],
            str(row["site"]),
            row["status"],
            fmt_time(row["started_at"]),
            fmt_duration(row["rto_s"]),
            human(row["age_s"]),
        )
    stdout.print(table)
    return 0
