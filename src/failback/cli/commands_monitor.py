"""monitor, auto enable|disable: the long-running monitor and its one person-owned switch."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from failback.cli.confirm import confirm
from failback.cli.context import load
from failback.cli.logs import LogFormat
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt, YesOpt
from failback.cli.output import emit_json, stderr, stdout


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    auto = typer.Typer(
        help="Switch automatic failback of a service on or off.", no_args_is_help=True
    )
    auto.command("enable")(auto_enable)
    auto.command("disable")(auto_disable)
    app.add_typer(auto, name="auto")


def monitor(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    log_file: Annotated[
        Path | None,
        typer.Option("--log-file", help="Append JSON-lines events here [default: stdout]"),
    ] = None,
    grace: Annotated[
        float,
        typer.Option("--grace", help="Seconds a run in progress may take to finish on SIGTERM"),
    ] = 30.0,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen", help="Also serve the HTTP API, dashboard and /metrics on HOST:PORT"
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option(
            "--node",
            help="This monitor's node in the topology's control_plane (several monitors, "
            "one leader elected through etcd)",
        ),
    ] = None,
    as_json: JsonOpt = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            help="json: every line one JSON object (events, and the API's lines with"
            " --listen), for log pipelines; text: every line for people [default: events"
            " as JSON lines, other messages as text]",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
) -> int:
    """Watch every service, fail over and back by policy; runs until SIGTERM/SIGINT.

    Events are JSON lines (on stdout, or --log-file), so --json changes nothing here;
    `--log-format text` writes them for people instead, and `json` makes every other
    line (the API's with --listen) a JSON object too. Under systemd (`Type=notify`) it
    sends READY=1 once it monitors, STOPPING=1 when it stops.
    """
    from failback.cli.sdnotify import lifecycle, watchdog_interval
    from failback.monitor.daemon import check_node, run_monitor

    del as_json
    topology = load(config)
    directory = state_dir or topology.state_dir
    check_node(topology, node)  # a wrong --node fails here, before anything starts
    as_json_logs = log_format == LogFormat.json
    settings = None
    if listen is not None:
        from failback.api import resolve_settings

        settings = resolve_settings(topology, state_dir=directory, listen=listen)
    if as_json_logs:
        from failback.cli.logs import configure
        from failback.model.secrets import Redactor

        token = settings.token if settings is not None else None
        configure("json", Redactor.for_topology(topology, token).text)
    api_url: str | None = None
    if settings is not None:
        from failback.api import ApiServer

        api = ApiServer(settings, own_logging=not as_json_logs).start()
        api_url = api.url
        if as_json_logs:
            from failback.cli.logs import say

            say(f"API and dashboard on {api.url}", logger="failback.monitor")
        else:
            stderr.print(f"API and dashboard on {api.url}", markup=False)
    options = {"grace": grace, "node": node, "api": api_url,
               "lifecycle": lifecycle, "watchdog_s": watchdog_interval(),
               "log_text": log_format == LogFormat.text}  # fmt: skip
    if log_file is None:
        run_monitor(topology, directory, log=None, **options)
        return 0
    with open(log_file, "a", encoding="utf-8") as log:
        run_monitor(topology, directory, log=log, **options)
    return 0


ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (shown in `failback status`)")]
ServiceArg = Annotated[str, typer.Argument(help="Service")]


def _set(service: str, enabled: bool, reason: str, config: Path | None, state_dir: Path | None,
         as_json: bool, yes: bool) -> int:  # fmt: skip
    from failback.config.journal import journal_for

    topology = load(config)
    svc = topology.service(service)
    confirm(f"{'Enable' if enabled else 'Disable'} automatic failback of {svc.name}?", yes)
    journal = journal_for(topology, state_dir)
    from failback.status.document import set_auto_failback

    state = set_auto_failback(
        journal, topology, svc.name, enabled=enabled, reason=reason, by=getpass.getuser()
    )
    record = {k: state[k] for k in ("enabled", "reason", "by", "at")}
    word = "enabled" if enabled else "disabled"
    if as_json:
        emit_json({"service": svc.name, "auto_failback": record})
        return 0
    stdout.print(f"automatic failback of {svc.name} {word}", markup=False)
    if enabled and svc.policy.failback != "automatic":
        stderr.print(
            f"note: policy failback of {svc.name} is manual; the monitor will not fail back "
            "by itself until the topology says failback: automatic",
            style="yellow",
            markup=False,
        )
    return 0


def auto_enable(
    service: ServiceArg,
    reason: ReasonOpt = "enabled by a person",
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Let the monitor fail SERVICE back by itself again (after a flap suspended it)."""
    return _set(service, True, reason, config, state_dir, as_json, yes)


def auto_disable(
    service: ServiceArg,
    reason: ReasonOpt = "disabled by a person",
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
    yes: YesOpt = False,
) -> int:
    """Stop the monitor from failing SERVICE back by itself (failover is unaffected)."""
    return _set(service, False, reason, config, state_dir, as_json, yes)
