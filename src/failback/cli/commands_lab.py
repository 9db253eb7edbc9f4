"""lab up|down|status|break|repair|partition|heal, lab monitors up|down|status, and demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from failback.cli.options import JsonOpt
from failback.cli.output import emit_json, stderr, stdout

DirOpt = Annotated[Path, typer.Option("--dir", help="Lab directory")]
SiteArg = Annotated[
    str, typer.Argument(help="Site: dc1 or dc2 (or witness, in a lab with --control-plane)")
]
WhatArg = Annotated[
    str,
    typer.Argument(
        help="What: db, web, router, host (the whole machine: netns lab), etcd (the "
        "machine's etcd member: --control-plane lab), or link (the path's link beyond its "
        "router: --network lab)"
    ),
]
HostsOpt = Annotated[
    str,
    typer.Option(
        "--hosts",
        help="local: everything on 127.0.0.1; netns: each site (and the edge) is its own "
        "machine, a network namespace with its own address and sshd (needs root)",
    ),
]


def register(app: typer.Typer) -> None:
    lab = typer.Typer(
        help="A two-site lab (PostgreSQL pair, HAProxy, PgBouncer, a web tier) on 127.0.0.1 "
        "or one network namespace per site.",
        no_args_is_help=True,
    )
    lab.command("up")(lab_up_cmd)
    lab.command("down")(lab_down_cmd)
    lab.command("status")(lab_status_cmd)
    lab.command("break")(lab_break_cmd)
    lab.command("repair")(lab_repair_cmd)
    lab.command("partition")(lab_partition_cmd)
    lab.command("heal")(lab_heal_cmd)
    monitors = typer.Typer(
        help="One `failback monitor --node` per machine of a lab made with --control-plane.",
        no_args_is_help=True,
    )
    monitors.command("up")(lab_monitors_up_cmd)
    monitors.command("down")(lab_monitors_down_cmd)
    monitors.command("status")(lab_monitors_status_cmd)
    lab.add_typer(monitors, name="monitors")
    app.add_typer(lab, name="lab")
    app.command("demo")(demo_cmd)


def lab_up_cmd(
    directory: DirOpt,
    sync: Annotated[bool, typer.Option("--sync", help="Synchronous replication")] = False,
    auto: Annotated[
        bool,
        typer.Option("--auto", help="Automatic failover/failback policies with short windows"),
    ] = False,
    hosts: HostsOpt = "local",
    control_plane: Annotated[
        bool,
        typer.Option(
            "--control-plane",
            help="With --hosts netns: a witness machine and a three-member etcd cluster "
            "(dc1, dc2, witness); the topology gets a control_plane section",
        ),
    ] = False,
    network: Annotated[
        bool,
        typer.Option(
            "--network",
            help="A lab of its own, without databases: a client and a server namespace "
            "joined by two routed paths (dc1 primary, dc2 backup), and a service 'net' "
            "whose route moves between them (needs root)",
        ),
    ] = False,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns",
            help="BIND 9 (named) on 127.0.0.1 with a zone and a TSIG key made for the lab; "
            "the service gets a dns component whose name follows its active site",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> int:
    """Create and start the lab in DIR (created, or empty)."""
    from failback.lab import lab_up
    from failback.lab.core import check_up_options, lab_document

    check_up_options(hosts=hosts, control_plane=control_plane, network=network, sync=sync, dns=dns)
    if network:
        return _network_lab_up(directory, auto=auto, as_json=as_json)
    if not as_json:
        stderr.print(f"starting a lab in {directory} ...", markup=False)
    info = lab_up(
        directory, sync=sync, auto=auto, hosts=hosts, control_plane=control_plane, dns=dns
    )
    doc = lab_document(info)
    if as_json:
        emit_json(doc)
        return 0
    stdout.print(f"lab up in {doc['dir']}", markup=False)
    stdout.print(f"  config: {doc['config']}", markup=False)
    stdout.print(f"  write endpoint (dsn): {doc['dsn']}", markup=False)
    for name, site in doc["sites"].items():
        where = f"{site['address']}:{site['port']}"
        netns = f", netns {site['netns']}" if site.get("netns") else ""
        stdout.print(f"  {name}: {where}{netns}, pgdata {site['pgdata']}", markup=False)
    if "control_plane" in doc:
        cp = doc["control_plane"]
        stdout.print(f"  etcd: {', '.join(cp['endpoints'])}", markup=False)
        stdout.print(
            f"  witness: {cp['witness']['address']}, netns {cp['witness']['netns']}",
            markup=False,
        )
        stdout.print(f"monitors: failback lab monitors up --dir {doc['dir']}", markup=False)
    if "dns" in doc:
        d = doc["dns"]
        stdout.print(
            f"  dns: {d['name']} in zone {d['zone']} at {d['server']}:{d['port']} (resolver "
            f"port {d['resolver_port']}, TSIG key {d['key_name']}, secret {d['secret_file']})",
            markup=False,
        )
    stdout.print(f"try: FAILBACK_CONFIG={doc['config']} failback status", markup=False)
    return 0


def _network_lab_up(directory: Path, *, auto: bool, as_json: bool) -> int:
    from failback.lab import pathlab

    if not as_json:
        stderr.print(f"starting a network lab in {directory} ...", markup=False)
    doc = pathlab.up(directory, auto=auto).document()
    if as_json:
        emit_json(doc)
        return 0
    net = doc["network"]
    stdout.print(f"network lab up in {doc['dir']}", markup=False)
    stdout.print(f"  config: {doc['config']}", markup=False)
    stdout.print(
        f"  client namespace {net['client_netns']} -> {net['prefix']} "
        f"(server {net['server_address']}, UDP echo on port {net['echo_port']})",
        markup=False,
    )
    for site, path in net["paths"].items():
        stdout.print(
            f"  {site}: via {path['gateway']} dev {path['dev']} (router namespace "
            f"{path['router_netns']}), probe {path['probe']}",
            markup=False,
        )
    stdout.print(
        f"try: FAILBACK_CONFIG={doc['config']} failback status net; "
        f"failback lab break dc1 link --dir {doc['dir']}",
        markup=False,
    )
    return 0


def lab_down_cmd(
    directory: DirOpt,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete DIR")] = False,
    as_json: JsonOpt = False,
) -> int:
    """Stop everything the lab started (and with --purge delete DIR)."""
    from failback.lab import lab_down

    doc = lab_down(directory, purge=purge)
    if as_json:
        emit_json(doc)
    else:
        stdout.print(
            f"lab in {directory} is down" + (" and deleted" if purge else ""), markup=False
        )
    return 0


def lab_status_cmd(directory: DirOpt, as_json: JsonOpt = False) -> int:
    """Which lab processes run, each database's role, the router's write target."""
    from failback.lab import lab_status

    doc = lab_status(directory)
    if as_json:
        emit_json(doc)
    else:
        import json

        stdout.print_json(json.dumps(doc, default=str))
    return 0


def lab_break_cmd(
    directory: DirOpt, site: SiteArg, what: WhatArg = "db", as_json: JsonOpt = False
) -> int:
    """Break SITE's component the hard way (db: SIGKILL of its postmaster)."""
    from failback.lab import lab_break

    doc = lab_break(directory, site, what)
    if as_json:
        emit_json(doc)
    else:
        stdout.print(f"{what} at {site} broken", markup=False)
    return 0


def lab_repair_cmd(
    directory: DirOpt, site: SiteArg, what: WhatArg = "db", as_json: JsonOpt = False
) -> int:
    """Start SITE's component again exactly as it was (a former primary still thinks it is)."""
    from failback.lab import lab_repair

    doc = lab_repair(directory, site, what)
    if as_json:
        emit_json(doc)
    else:
        stdout.print(f"{what} at {site} repaired", markup=False)
    return 0


def lab_partition_cmd(directory: DirOpt, site: SiteArg, as_json: JsonOpt = False) -> int:
    """Cut SITE off the network; its processes keep running (netns lab)."""
    from failback.lab.core import lab_partition

    doc = lab_partition(directory, site)
    if as_json:
        emit_json(doc)
    else:
        stdout.print(f"{site} is cut off the network (its processes still run)", markup=False)
    return 0


def lab_heal_cmd(directory: DirOpt, site: SiteArg, as_json: JsonOpt = False) -> int:
    """Bring SITE's network link back (netns lab)."""
    from failback.lab.core import lab_heal

    doc = lab_heal(directory, site)
    if as_json:
        emit_json(doc)
    else:
        stdout.print(f"{site} is back on the network", markup=False)
    return 0


def lab_monitors_up_cmd(directory: DirOpt, as_json: JsonOpt = False) -> int:
    """Start a monitor (failback monitor --node MACHINE) on dc1, dc2 and the witness,
    each in its machine's namespace; those already running are left alone."""
    from failback.lab.monitors import monitors_up

    doc = monitors_up(directory)
    if as_json:
        emit_json(doc)
    else:
        for name, mon in doc["monitors"].items():
            if mon["running"]:
                how = "started" if mon["started"] else "already running"
                stdout.print(f"monitor {name}: {how}, pid {mon['pid']}", markup=False)
            else:
                stderr.print(
                    f"error: monitor {name}: {mon.get('error', 'not running')}", markup=False
                )
                hint = mon.get("hint") or f"see {mon['console_file']}"
                stderr.print(f"hint: {hint}", style="yellow", markup=False)
    return 0 if doc["ok"] else 1


def lab_monitors_down_cmd(directory: DirOpt, as_json: JsonOpt = False) -> int:
    """Stop the lab's monitors (SIGTERM, then SIGKILL after a bounded wait)."""
    from failback.lab.monitors import monitors_down

    doc = monitors_down(directory)
    if as_json:
        emit_json(doc)
    elif doc["stopped"]:
        for name, mon in doc["stopped"].items():
            stdout.print(f"monitor {name} (pid {mon['pid']}) {mon['how']}", markup=False)
    else:
        stdout.print("no monitor was running", markup=False)
    return 0


def lab_monitors_status_cmd(directory: DirOpt, as_json: JsonOpt = False) -> int:
    """Which of the lab's monitors run, with their PIDs and files."""
    from failback.lab.monitors import monitors_status

    doc = monitors_status(directory)
    if as_json:
        emit_json(doc)
    else:
        for name, mon in doc["monitors"].items():
            state = f"running, pid {mon['pid']}" if mon["running"] else "not running"
            stdout.print(f"monitor {name} ({mon['netns']}): {state}", markup=False)
    return 0


def demo_cmd(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Lab directory [default: a temporary one]")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the lab running")] = False,
    hosts: HostsOpt = "local",
    as_json: JsonOpt = False,
) -> int:
    """Lab up, a writer, dc1 breaks, failover, dc1 repaired (stale, fenced), failback, report.

    With --hosts netns each site is its own machine reached over SSH, and dc1's whole
    machine dies (every process SIGKILLed, its link down) instead of its postmaster."""
    from failback.cli.demo import run_demo

    return run_demo(directory, keep=keep, as_json=as_json, hosts=hosts)
