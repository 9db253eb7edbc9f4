"""Build the Pgbouncer handle and the [databases] lines from a topology component."""

from __future__ import annotations

from typing import Any

from failback.drivers.pgbouncer.admin import Pgbouncer


def pgbouncer_of(component: Any) -> Pgbouncer:
    opts = component.options
    password = opts.admin_password.resolve() if opts.admin_password is not None else None
    return Pgbouncer(
        host=opts.host, port=int(opts.port), admin_user=opts.admin_user,
        admin_password=password, databases_file=str(opts.databases_file),
        os_user=opts.os_user,
    )  # fmt: skip


def database_lines(component: Any, site: str) -> dict[str, str]:
    """``name = host=H port=P dbname=D`` for every pooled database, aimed at ``site``."""
    where = component.sites[site]
    return {
        name: f"host={where.host} port={where.port} dbname={where.dbname or name}"
        for name in component.options.databases
    }
