"""The lab's PostgreSQL pair, built from the postgres driver's primitives.

initdb/start/stop/kill come from ``failback.drivers.postgres.process`` so the lab
starts a node exactly the way failback itself will (port on the command line,
per-node nothing else). What the driver does not offer yet is here, small:
creating roles through the local socket and cloning the first standby.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgCommandFailed, PgError
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import initdb, run_pg, start
from failback.hosts import Host
from failback.lab.info import LabError, LabInfo, LabSite
from failback.lab.ports import pick_ports

ADMIN_USER = "failback"
REPLICATION_USER = "replicator"
APP_USER = "app"
DBNAME = "app"
SECRETS = {"admin": "failback.pass", "replication": "replicator.pass", "app": "app.pass"}

_BIND_ERRORS = ("could not bind", "address already in use", "could not create any tcp/ip")


def secret_path(directory: Path, which: str) -> str:
    return str(directory / "secrets" / SECRETS[which])


def read_secret(host: Host, directory: Path, which: str) -> str:
    return host.read_text(secret_path(directory, which)).strip()


def lab_node(host: Host, info: LabInfo, site: str) -> PgNode:
    """The driver's view of one lab site, as failback.yaml describes it."""
    where: LabSite = info.site(site)
    directory = Path(info.dir)
    return PgNode(
        site=site,
        host="127.0.0.1",
        port=where.port,
        pgdata=where.pgdata,
        bin_dir=info.bin_dir,
        os_user=where.os_user,
        user=ADMIN_USER,
        password=read_secret(host, directory, "admin"),
        dbname=DBNAME,
        replication_user=REPLICATION_USER,
        replication_password=read_secret(host, directory, "replication"),
    )


def settings(run_dir: str, *, sync: bool) -> dict[str, object]:
    """postgresql.conf settings shared by both nodes (pg_basebackup copies the file).

    Nothing per node goes here: the port is on the command line. ``ANY 1 (dc1, dc2)``
    makes synchronous replication symmetric: a primary is never its own standby, so
    dc1 waits for dc2 and, after a failover, dc2 waits for dc1.
    """
    conf: dict[str, object] = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": run_dir,
        "shared_buffers": "32MB",
        "max_connections": 50,
        "wal_keep_size": "128MB",
        "hot_standby": True,
        "log_line_prefix": "%m [%p] ",
    }
    if sync:
        conf["synchronous_standby_names"] = "ANY 1 (dc1, dc2)"
    return conf


def is_bind_error(exc: BaseException) -> bool:
    return any(marker in str(exc).lower() for marker in _BIND_ERRORS)


def start_on_free_port(
    host: Host, node: PgNode, avoid: set[int], *, attempts: int = 5, check_connect: bool = True
) -> PgNode:
    """Start ``node``; when its port was taken meanwhile, pick another and retry.

    ``check_connect=False`` for the very first start, before the roles exist.
    """
    for attempt in range(attempts):
        try:
            start(host, node, timeout=60, check_connect=check_connect)
            return node
        except PgCommandFailed as exc:
            if not is_bind_error(exc) or attempt == attempts - 1:
                raise
            (port,) = pick_ports(1, avoid=avoid)
            avoid.add(port)
            node = _with_port(node, port)
    return node  # pragma: no cover - loop always returns or raises


def _with_port(node: PgNode, port: int) -> PgNode:
    from dataclasses import replace

    return replace(node, port=port)


def init_primary(host: Host, node: PgNode, run_dir: str, *, sync: bool) -> None:
    """initdb with data checksums and 1 MB WAL segments; superuser = the OS user (peer)."""
    initdb(
        host,
        node,
        data_checksums=True,
        wal_segsize_mb=1,
        settings=settings(run_dir, sync=sync),
        sync=False,
    )


def create_roles(host: Host, node: PgNode, run_dir: str, app_password: str) -> None:
    """Roles and database, through the local socket as the OS user (peer auth).

    The SQL (with passwords) goes on stdin, never argv, which ``ps`` shows.
    """
    assert node.password and node.replication_password
    sql = "\n".join(
        [
            f"CREATE ROLE {ADMIN_USER} LOGIN SUPERUSER PASSWORD {_lit(node.password)};",
            f"CREATE ROLE {REPLICATION_USER} LOGIN REPLICATION "
            f"PASSWORD {_lit(node.replication_password)};",
            f"CREATE ROLE {APP_USER} LOGIN PASSWORD {_lit(app_password)};",
            f"CREATE DATABASE {DBNAME} OWNER {APP_USER};",
            "",
        ]
    )
    argv = [node.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", run_dir]
    argv += ["-p", str(node.port), "-U", node.os_user, "-d", "postgres"]
    run_pg(host, node, argv, input_text=sql, what="creating the lab's roles")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def clone_standby(host: Host, primary: PgNode, standby: PgNode) -> None:
    """pg_basebackup the primary into the standby's pgdata, with ``-R`` (standby.signal
    and primary_conninfo naming the standby's site as application_name, which
    synchronous_standby_names and pg_stat_replication use)."""
    parent = os.path.dirname(standby.pgdata)
    host.make_dirs(parent, owner=standby.os_user, mode=0o700)
    conninfo = primary.replication_conninfo(application_name=standby.site)
    argv = [
        standby.bin("pg_basebackup"),
        "-d",
        conninfo,
        "-D",
        standby.pgdata,
        "-X",
        "stream",
        "-c",
        "fast",
        "-R",
        "--no-sync",
    ]
    env = {"PGPASSWORD": primary.replication_secret or ""}
    run_pg(host, standby, argv, env=env, timeout=300, what="pg_basebackup")


def wait_streaming(primary: PgNode, standby_site: str, *, timeout: float = 30.0) -> None:
    """Wait until the primary lists the standby as streaming in pg_stat_replication."""
    deadline = time.monotonic() + timeout
    last = "not connected"
    while time.monotonic() < deadline:
        try:
            with connect(primary) as conn:
                row = conn.execute(
                    "SELECT state FROM pg_stat_replication WHERE application_name = %s",
                    (standby_site,),
                ).fetchone()
            if row and row[0] == "streaming":
                return
            last = row[0] if row else "not connected"
        except PgError as exc:
            last = exc.message
        time.sleep(0.05)
    raise LabError(
        f"standby {standby_site} is not streaming from {primary.site} after {timeout:g}s ({last})",
        hint=f"see the standby's server log in {os.path.dirname(primary.pgdata)}/..",
    )
