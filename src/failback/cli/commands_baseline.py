"""baseline record|show|diff, incident mark|clear: the return after a security incident.

A baseline is taken on a day a site is known clean; marking a service after an
incident makes its next failback stop at the clean_room gate, which shows every
difference between the site and its baseline and waits for a person (docs/incident.md).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from failback.cli.confirm import confirm
from failback.cli.context import load
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt, YesOpt
from failback.cli.output import emit_json, stderr, stdout
from failback.errors import UsageError

SiteArg = Annotated[str, typer.Argument(help="Site (see `failback status`)")]
ServiceArg = Annotated[str, typer.Argument(help="Service")]


def register(app: typer.Typer) -> None:
    baseline = typer.Typer(
        help="Hashes of a site's declared files and command outputs, to prove it clean.",
        no_args_is_help=True,
    )
    baseline.command("record")(baseline_record)
    baseline.command("show")(baseline_show)
    baseline.command("diff")(baseline_diff)
    app.add_typer(baseline, name="baseline")
    incident = typer.Typer(
        help="Mark a service after a security incident: its next failback carries the "
        "clean_room gate.",
        no_args_is_help=True,
    )
    incident.command("mark")(incident_mark)
    incident.command("clear")(incident_clear)
    app.add_typer(incident, name="incident")


def _opened(config: Path | None, state_dir: Path | None) -> tuple[Any, Any]:
    from failback.config.journal import journal_for

    topology = load(config)
    return topology, journal_for(topology, state_dir)


def _marked_at(topology: Any, journal: Any, site: str) -> list[str]:
    """Services whose primary site is ``site`` and that are marked after_incident."""
    from failback.baseline.incident import incident_mark

    return [
        name
        for name, service in topology.services.items()
        if service.primary_site == site and incident_mark(journal.service_state(name))
    ]


def baseline_record(
    site: SiteArg,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Hash SITE's declared files and command outputs now and keep them as its baseline.

    Do it on a day the site is known clean: the clean_room gate trusts it.
    """
    from failback.baseline.files import load_baseline, save_baseline
    from failback.baseline.site import declared_for, record_site

    topology, journal = _opened(config, state_dir)
    declared_for(topology, site)  # nothing to hash: refused before asking anything
    old = load_baseline(journal.state_dir, site)
    marked = _marked_at(topology, journal, site)
    if old is not None or marked:
        from failback.baseline.compare import when

        what = (
            f"Replace the baseline of {site} recorded {when(old['recorded_at'])}"
            if old
            else (f"Record a baseline of {site}")
        )
        if marked:
            what += f" while {', '.join(marked)} is marked after_incident (is {site} clean?)"
        confirm(f"{what}?", yes)
    with topology.open_hosts() as hosts:
        document = record_site(topology, hosts, site)
    path = save_baseline(journal.state_dir, document)
    journal.add_event(
        "baseline.recorded",
        f"baseline of {site} recorded by {document['recorded_by']}",
        data={"site": site, "path": str(path), "hosts": list(document["hosts"])},
    )
    summary = _summary(document)
    if as_json:
        emit_json({"site": site, "path": str(path), **summary})
        return 0
    stdout.print(
        f"baseline of {site} recorded in {path}: {summary['files']} file(s), "
        f"{summary['commands']} command(s) on {', '.join(document['hosts'])}",
        markup=False,
        highlight=False,
    )
    for note in summary["notes"]:
        stderr.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    return 0


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    files = commands = 0
    notes: list[str] = []
    for host, facts in document["hosts"].items():
        for path, entry in facts.get("files", {}).items():
            if entry.get("state") == "file":
                files += 1
            else:
                notes.append(f"{host}: {path} is {entry.get('state')} (recorded as such)")
        for name, entry in facts.get("commands", {}).items():
            commands += 1
            if entry.get("exit") != 0:
                why = "timed out" if entry.get("timed_out") else f"exit {entry.get('exit')}"
                notes.append(f"{host}: command {name} {why} (recorded as such)")
    return {
        "recorded_at": document["recorded_at"],
        "recorded_by": document["recorded_by"],
        "hosts": list(document["hosts"]),
        "files": files,
        "commands": commands,
        "notes": notes,
    }


def _load(journal: Any, site: str) -> dict[str, Any]:
    from failback.baseline.files import baseline_path, load_baseline

    document = load_baseline(journal.state_dir, site)
    if document is None:
        raise UsageError(
            f"no baseline of {site} in {baseline_path(journal.state_dir, site).parent}",
            f"record one on a day {site} is known clean: failback baseline record {site}",
        )
    return document


def baseline_show(
    site: SiteArg,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Show SITE's baseline: when, by whom, and every hash it holds."""
    from failback.baseline.compare import short, when

    topology, journal = _opened(config, state_dir)
    topology.site(site)
    document = _load(journal, site)
    if as_json:
        hosts = {
            host: {
                "files": facts.get("files", {}),
                "commands": {
                    name: {k: v for k, v in entry.items() if k != "output"}
                    for name, entry in facts.get("commands", {}).items()
                },
            }
            for host, facts in document["hosts"].items()
        }
        keys = ("site", "recorded_at", "recorded_by", "topology", "declared")
        emit_json({**{k: document[k] for k in keys}, "hosts": hosts})
        return 0
    stdout.print(
        f"baseline of {site}: recorded {when(document['recorded_at'])} by "
        f"{document['recorded_by']} (topology {document['topology']})",
        markup=False,
        highlight=False,
    )
    for host, facts in document["hosts"].items():
        stdout.print(f"{host}:", markup=False, highlight=False)
        for path, entry in facts.get("files", {}).items():
            shown = short(entry.get("sha256")) if entry.get("state") == "file" else entry["state"]
            stdout.print(f"  file     {path}  {shown}", markup=False, highlight=False)
        for name, entry in facts.get("commands", {}).items():
            stdout.print(
                f"  command  {name}: {entry['command']}  exit {entry.get('exit')}, "
                f"{short(entry.get('sha256'))}",
                markup=False,
                highlight=False,
            )
    return 0


def baseline_diff(
    site: SiteArg,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Compare SITE now with its baseline; exit 0 when identical, 1 when anything differs."""
    from failback.baseline.compare import compare, when
    from failback.baseline.site import measure_declared

    topology, journal = _opened(config, state_dir)
    topology.site(site)
    document = _load(journal, site)
    with topology.open_hosts() as hosts:
        found = compare(document, measure_declared(hosts, document["declared"]))
    if as_json:
        emit_json({"site": site, "baseline_recorded_at": document["recorded_at"],
                   "clean": not found, "differences": [d.to_dict() for d in found]})  # fmt: skip
        return 1 if found else 0
    since = f"its baseline of {when(document['recorded_at'])}"
    if not found:
        stdout.print(f"{site} matches {since}", markup=False, highlight=False)
        return 0
    stdout.print(f"{site} differs from {since} in {len(found)} place(s):", markup=False)
    for difference in found:
        stdout.print(f"  {difference.line()}", markup=False, highlight=False)
        for line in difference.lines:
            stdout.print(f"      {line}", markup=False, highlight=False)
    return 1


ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (shown in `failback status` and the events)")
]


def incident_mark(
    service: ServiceArg,
    reason: ReasonOpt = "",
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Mark SERVICE after a security incident: its next failback stops at the clean_room
    gate (every difference from the primary site's baseline, a person's approval)."""
    from failback.baseline.files import recorded_at
    from failback.baseline.incident import set_mark

    topology, journal = _opened(config, state_dir)
    svc = topology.service(service)
    confirm(f"Mark {svc.name} after_incident (its next failback stops at the clean room)?", yes)
    mark = set_mark(journal, topology, svc.name, reason=reason, by=getpass.getuser())
    home = svc.primary_site
    baseline_at = recorded_at(journal.state_dir, home)
    holder = journal.lock_holder(svc.name)
    if as_json:
        emit_json({"service": svc.name, "after_incident": mark, "site": home,
                   "baseline_recorded_at": baseline_at, "run_in_progress": holder})  # fmt: skip
        return 0
    stdout.print(
        f"{svc.name} marked after_incident: its next failback stops at the clean_room gate "
        f"at {home}",
        markup=False,
        highlight=False,
    )
    if baseline_at is None:
        stderr.print(
            f"note: {home} has no baseline: a failback is refused until one exists "
            f"(failback baseline record {home}, only where {home} is known clean)",
            style="yellow",
            markup=False,
        )
    if holder is not None:
        stderr.print(
            f"note: run {holder} holds {svc.name} and was planned without the gate; "
            f"`failback abort {holder}` and fail back again to go through the clean room",
            style="yellow",
            markup=False,
        )
    return 0


def incident_clear(
    service: ServiceArg,
    reason: ReasonOpt = "cleared by a person",
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Remove SERVICE's after_incident mark: its failbacks no longer carry the gate."""
    from failback.baseline.incident import clear_mark

    topology, journal = _opened(config, state_dir)
    svc = topology.service(service)
    confirm(f"Clear the after_incident mark of {svc.name} (no clean room on failback)?", yes)
    was = clear_mark(journal, svc.name, svc.primary_site, by=getpass.getuser(), why=reason)
    if as_json:
        emit_json({"service": svc.name, "cleared": was is not None, "was": was})
        return 0
    if was is None:
        stdout.print(f"{svc.name} was not marked after_incident", markup=False)
    else:
        stdout.print(f"{svc.name}: after_incident mark cleared", markup=False)
    return 0
