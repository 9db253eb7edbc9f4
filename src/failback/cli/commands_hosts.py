"""``failback hosts check``: can failback reach every machine of the topology, as whom,
and how fast. Run it before the first failover, not during one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

import typer
from rich.table import Table

from failback.cli.context import load
from failback.cli.options import ConfigOpt, JsonOpt
from failback.cli.output import emit_json, stderr, stdout
from failback.config import Topology
from failback.errors import FailbackError, UsageError
from failback.hosts import HostCheck, HostSet, check_host


def register(app: typer.Typer) -> None:
    hosts_app = typer.Typer(
        help="The machines components run on (the topology's hosts: section).",
        no_args_is_help=True,
    )
    hosts_app.command("check")(check)
    app.add_typer(hosts_app, name="hosts")


def check(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Hosts to check [default: every host the topology uses]"),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds to wait for each command."),
    ] = 10.0,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Connect to every host, run a trivial command, report reachability, latency and
    the identity seen; exit 1 when any host cannot be reached. Changes nothing."""
    topology = load(config)
    wanted = _hosts_to_check(topology, names or [])
    with topology.open_hosts() as hosts, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda name: _check_one(hosts, name, timeout), wanted))
    unreachable = [r for r in results if not r.reachable]
    if as_json:
        emit_json({"hosts": [r.to_dict() for r in results], "ok": not unreachable})
    else:
        stdout.print(_table(results))
        for result in unreachable:
            stderr.print(
                f"error: {_named(result)}",
                style="bold red",
                markup=False,
                highlight=False,
            )
            if result.hint:
                stderr.print(f"hint: {result.hint}", style="yellow", markup=False, highlight=False)
    return 1 if unreachable else 0


def _hosts_to_check(topology: Topology, names: list[str]) -> list[str]:
    """The machines named, else every machine components run on plus every declared one."""
    declared = list(topology.hosts)
    used = [
        topology.host_name(component, site)
        for service in topology.services.values()
        for component in service.components.values()
        for site in component.site_names
    ]
    known = ["local", *declared]
    if not names:
        return list(dict.fromkeys([*used, *declared]))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"no host {unknown[0]!r} in the topology",
            f"declared hosts: {', '.join(known)}",
        )
    return list(dict.fromkeys(names))


def _check_one(hosts: HostSet, name: str, timeout: float) -> HostCheck:
    try:
        host = hosts.get(name)  # an ssh host's key is read here: may be missing
    except FailbackError as exc:
        return HostCheck(name, False, kind="config", message=exc.message, hint=exc.hint)
    result = check_host(host, timeout=timeout)
    if result.name != name:  # a local host calls itself "local" whatever its entry's name
        return HostCheck(**{**result.to_dict(), "name": name})
    return result


def _named(result: HostCheck) -> str:
    """The failure, naming the host once (a host's own errors start with "host NAME: ")."""
    if result.message.startswith(f"host {result.name}: "):
        return result.message
    return f"host {result.name}: {result.message}"


def _table(results: list[HostCheck]) -> Table:
    table = Table(title="hosts")
    table.add_column("host")
    table.add_column("reachable")
    table.add_column("connect", justify="right")
    table.add_column("command", justify="right")
    table.add_column("as")
    table.add_column("failure")
    for r in results:
        who = r.identity.get("user", "-")
        if r.identity.get("hostname"):
            who += f"@{r.identity['hostname']}"
        table.add_row(
            r.name,
            "yes" if r.reachable else "no",
            "-" if r.connect_ms is None else f"{r.connect_ms:.0f}ms",
            "-" if r.latency_ms is None else f"{r.latency_ms:.1f}ms",
            who,
            (r.kind or "") if not r.reachable else "",
        )
    return table
