"""Build the Pgbouncer handle and the [databases] lines from a topology component."""

from __future__ import annotations

from typing import Any

from failback.drivers.pgbouncer.admin import Pgbouncer, PgbouncerError
from failback.drivers.pgbouncer.names import (
    DATABASE_RULE,
    HOST_RULE,
    database_problem,
    host_problem,
)


def pgbouncer_of(component: Any) -> Pgbouncer:
    opts = component.options
    password = opts.admin_password.resolve() if opts.admin_password is not None else None
    return Pgbouncer(
        host=opts.host, port=int(opts.port), admin_user=opts.admin_user,
        admin_password=password, databases_file=str(opts.databases_file),
        os_user=opts.os_user,
    )  # fmt: skip


def database_lines(component: Any, site: str) -> dict[str, str]:
    """``name = host=H port=P dbname=D`` for every pooled database, aimed at ``site``.

    Every value is checked against the rules the topology loader applies (names.py):
    an unchecked space, ``=`` or new line would add keys or lines to the file.
    """
    where = component.sites[site]
    lines: dict[str, str] = {}
    for name in component.options.databases:
        dbname = where.dbname or name
        for problem, rule in (
            (database_problem(name), DATABASE_RULE),
            (database_problem(dbname), DATABASE_RULE),
            (host_problem(str(where.host)), HOST_RULE),
        ):
            if problem is not None:
                raise PgbouncerError(f"{site}: {problem}", hint=f"use {rule}")
        lines[name] = f"host={where.host} port={int(where.port)} dbname={dbname}"
    return lines
