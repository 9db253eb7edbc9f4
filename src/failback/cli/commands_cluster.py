"""``failback cluster status``: the control plane's members, leader and etcd, from any
machine that reaches etcd. Changes nothing."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from failback.cli.context import load
from failback.cli.options import ConfigOpt, JsonOpt
from failback.cli.output import emit_json, stderr, stdout


def register(app: typer.Typer) -> None:
    cluster = typer.Typer(
        help="The control plane: monitors on several machines, one leader (etcd).",
        no_args_is_help=True,
    )
    cluster.command("status")(status)
    app.add_typer(cluster, name="cluster")


def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> int:
    """Members, leader, lease time left and etcd's health; exit 1 when etcd cannot
    answer (the members and the leader are then unknown) or nobody leads."""
    from failback.status.cluster import cluster_document

    document = cluster_document(load(config))
    healthy = document["error"] is None and document["leader"] is not None
    if as_json:
        emit_json(document)
        return 0 if healthy else 1
    stdout.print(_members_table(document))
    stdout.print(_etcd_table(document))
    leader = document["leader"]
    if document["error"]:
        stderr.print(f"error: {document['error']}", style="bold red", markup=False)
        if document.get("hint"):
            stderr.print(f"hint: {document['hint']}", style="yellow", markup=False)
    elif leader is None:
        stderr.print(
            "no leader: no monitor acts until one is elected (is any monitor running?)",
            style="yellow",
            markup=False,
        )
    else:
        stdout.print(
            f"leader: {leader['node']} (lease {_seconds(leader['lease_ttl_left'])} left of "
            f"{document['lease_ttl']} s)",
            markup=False,
        )
    return 0 if healthy else 1


def _members_table(document: dict[str, Any]) -> Table:
    table = Table(title=f"control plane {document['prefix']}")
    for column in ("node", "site", "role", "pid", "host", "lease left"):
        table.add_column(column)
    for member in document["members"]:
        present = member.get("present")
        role = (
            "leader"
            if member.get("leader")
            else "member"
            if present
            else "unknown"
            if present is None
            else "absent"
        )
        table.add_row(
            member["node"],
            str(member.get("declared_site") or member.get("site") or "-"),
            role,
            str(member.get("pid") or "-"),
            str(member.get("hostname") or "-"),
            _seconds(member.get("lease_ttl_left")) if present else "-",
        )
    return table


def _etcd_table(document: dict[str, Any]) -> Table:
    etcd = document["etcd"]
    table = Table(title=f"etcd: {etcd['healthy']} of {etcd['total']} endpoints healthy")
    for column in ("endpoint", "health", "version", "raft leader"):
        table.add_column(column)
    for endpoint in etcd["endpoints"]:
        table.add_row(
            endpoint["endpoint"],
            "ok" if endpoint["healthy"] else str(endpoint.get("error") or "unhealthy"),
            str(endpoint.get("version") or "-"),
            "yes" if endpoint.get("raft_leader") else "",
        )
    return table


def _seconds(value: Any) -> str:
    return "-" if value is None or value < 0 else f"{value} s"
