"""The lab's PostgreSQL pair, built from the postgres driver's primitives.

initdb/start/stop/kill come from ``failback.drivers.postgres.process`` so the lab
starts a node exactly the way failback itself will (port on the command line,
per-node nothing else). What the driver does not offer yet is here, small:
creating roles through the local socket and cloning the first standby.
"""

from __future__ import annotations

import os
from pathlib import Path

from failback.drivers.postgres.errors import PgCommandFailed
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import initdb, reload, run_pg, start
from failback.drivers.postgres.resync import reclone
from failback.hosts import Host
from failback.lab.info import LabInfo, LabSite
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
        host=where.address,
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


SYNC_NAMES = "ANY 1 (dc1, dc2)"


def settings(run_dir: str, *, sync: bool, listen: str = "127.0.0.1") -> dict[str, object]:
    """postgresql.conf settings shared by both nodes (pg_basebackup copies the file).

    Nothing per node goes here: the port is on the command line. ``ANY 1 (dc1, dc2)``
    makes synchronous replication symmetric: a primary is never its own standby, so
    dc1 waits for dc2 and, after a failover, dc2 waits for dc1. ``listen``: ``*`` in
    the netns lab, where each node's namespace has only its own address (and lo).
    """
    conf: dict[str, object] = {
        "listen_addresses": listen,
        "unix_socket_directories": run_dir,
        "shared_buffers": "32MB",
        "max_connections": 50,
        "wal_keep_size": "128MB",
        # failback's capture of diverged transactions decodes logical slots; a slot
        # nobody moves forward (no monitor) keeps at most this much WAL
        "wal_level": "logical",
        "max_slot_wal_keep_size": "256MB",
        "hot_standby": True,
        "log_line_prefix": "%m [%p] ",
    }
    if sync:
        conf["synchronous_standby_names"] = SYNC_NAMES
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


def init_primary(host: Host, node: PgNode, run_dir: str, *, subnet: str | None = None) -> None:
    """initdb with data checksums and 1 MB WAL segments; superuser = the OS user (peer).

    Always asynchronous at first: with a synchronous standby named before one
    exists, creating the roles would wait forever. ``enable_sync`` comes later.
    ``subnet`` (the netns lab): the other machines' range may log in and replicate
    (password-authenticated); pg_basebackup copies pg_hba.conf to the standby.
    """
    initdb(
        host,
        node,
        data_checksums=True,
        wal_segsize_mb=1,
        settings=settings(run_dir, sync=False, listen="127.0.0.1" if subnet is None else "*"),
        sync=False,
    )
    if subnet is not None:
        hba = os.path.join(node.pgdata, "pg_hba.conf")
        lines = [
            f"host all all {subnet} scram-sha-256",
            f"host replication {REPLICATION_USER} {subnet} scram-sha-256",
        ]
        text = host.read_text(hba)
        host.write_text(hba, text + "\n".join(lines) + "\n", owner=node.os_user, mode=0o600)


def enable_sync(host: Host, nodes: list[PgNode]) -> None:
    """Name the synchronous standbys in every node's postgresql.conf, then reload.

    postgresql.conf rather than ALTER SYSTEM on the primary alone: the setting must
    hold on whichever node is primary after a failover.
    """
    for node in nodes:
        conf = os.path.join(node.pgdata, "postgresql.conf")
        text = host.read_text(conf)
        line = f"synchronous_standby_names = '{SYNC_NAMES}'"
        if line not in text:
            host.write_text(conf, text + line + "\n", owner=node.os_user, mode=0o600)
        reload(node)


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
    """The standby's pgdata as a pg_basebackup of the primary, configured to stream
    from it (the driver's ``reclone``: standby.signal, primary_conninfo naming the
    standby's site as application_name). Starting it is the caller's next step."""
    host.make_dirs(os.path.dirname(standby.pgdata), owner=standby.os_user, mode=0o700)
    reclone(host, standby, primary, timeout=300)
