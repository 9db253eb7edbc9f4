"""One PostgreSQL node (one site's cluster member) as the driver sees it.

The driver is written against this small frozen dataclass, not against the config
models, so that it can be tested (and used by the lab) without a topology file.
``node_from_component`` is the bridge from the config package.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from failback.drivers.postgres.errors import PgError
from failback.hosts.base import Host
from failback.hosts.local import LocalHost
from failback.hosts.ssh_errors import HostUnreachable

DEFAULT_PG_ROOT = "/usr/lib/postgresql"


@dataclass(frozen=True)
class PgNode:
    """Where one node lives and how to reach it.

    ``host``/``port`` are the network address clients and replicas use. ``pgdata`` is
    the data directory; ``conf_dir`` is the directory holding postgresql.conf when it
    is not the data directory (Debian layout: /etc/postgresql/15/main) and is what
    ``pg_ctl -D`` gets. Passwords are left out of ``repr`` so a logged node never leaks.
    """

    site: str
    host: str
    port: int
    pgdata: str
    bin_dir: str
    os_user: str = "postgres"
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    replication_user: str | None = None
    replication_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 2.0
    conf_dir: str | None = None
    log_file: str | None = None

    @property
    def address(self) -> str:
        """host:port, the way messages name a node."""
        return f"{self.host}:{self.port}"

    @property
    def ctl_dir(self) -> str:
        """What ``pg_ctl -D`` / ``postgres -D`` get: the config dir if separate, else pgdata."""
        return self.conf_dir or self.pgdata

    @property
    def server_log(self) -> str:
        """Where ``pg_ctl -l`` writes. Inside pgdata unless set: note pg_rewind and
        pg_basebackup replace the contents of pgdata, so set ``log_file`` outside it
        when the server log must survive a resync."""
        return self.log_file or os.path.join(self.pgdata, "failback-postmaster.log")

    def bin(self, program: str) -> str:
        return os.path.join(self.bin_dir, program)

    def dsn(self, *, dbname: str | None = None, with_password: bool = False) -> str:
        """libpq conninfo for the node's admin user. The password is left out unless asked:
        ``connect`` passes it separately so that a logged DSN never carries it."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": dbname or self.dbname,
            "connect_timeout": max(1, round(self.connect_timeout)),
        }
        if with_password and self.password:
            params["password"] = self.password
        return _conninfo(params)

    def replication_conninfo(
        self, *, application_name: str | None = None, with_password: bool = False
    ) -> str:
        """conninfo a standby uses to stream from this node (physical replication)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.replication_user or self.user,
            "connect_timeout": max(2, round(self.connect_timeout)),
        }
        password = self.replication_password if self.replication_user else self.password
        if with_password and password:
            params["password"] = password
        if application_name:
            params["application_name"] = application_name
        return _conninfo(params)

    @property
    def replication_secret(self) -> str | None:
        """The password that goes with ``replication_conninfo``'s user."""
        return self.replication_password if self.replication_user else self.password


def detect_bin_dir(host: Host) -> str:
    """The newest /usr/lib/postgresql/<major>/bin, else the directory of pg_ctl on PATH."""
    majors = []
    for name in host.list_dir(DEFAULT_PG_ROOT):
        if name.isdigit() and host.exists(os.path.join(DEFAULT_PG_ROOT, name, "bin", "pg_ctl")):
            majors.append(int(name))
    if majors:
        return os.path.join(DEFAULT_PG_ROOT, str(max(majors)), "bin")
    result = host.run(["/bin/sh", "-c", "command -v pg_ctl"], timeout=10)
    path = result.stdout.strip()
    if result.ok and path:
        return os.path.dirname(path)
    raise PgError(
        f"PostgreSQL programs not found on {host.name} "
        f"(no {DEFAULT_PG_ROOT}/*/bin/pg_ctl and no pg_ctl on PATH)",
        hint="install PostgreSQL or set options.bin_dir on the postgres component",
    )


def _resolve(secret: Any) -> str | None:
    if secret is None:
        return None
    if isinstance(secret, str):
        return secret
    return str(secret.resolve())


BIN_DIR_ANSWER_S = 1.0
"""How long finding ``bin_dir`` (when the topology does not give it) waits for the
machine to answer."""


def node_from_component(comp: Any, site: str, host: Host | None = None) -> PgNode:
    """Build the node of ``site`` from a config postgres component (duck-typed).

    Reads ``comp.options`` (user, password, dbname, replication_user,
    replication_password, bin_dir, connect_timeout) and ``comp.sites[site]`` (host,
    port, pgdata, os_user, conf_dir). Secrets are resolved here, once.
    """
    opts = comp.options
    where = comp.sites[site]
    bin_dir = getattr(opts, "bin_dir", None)
    if not bin_dir:
        if host is None:
            host = LocalHost()
        try:
            # a machine that does not answer soon is not waited for here: observing
            # and fencing must not spend an SSH connect timeout on finding pg_ctl
            bin_dir = detect_bin_dir(host) if host.reachable(BIN_DIR_ANSWER_S) else ""
        except HostUnreachable:
            bin_dir = ""  # unknown: every command needs that machine, and says it is unreachable
    return PgNode(
        site=site,
        host=str(where.host),
        port=int(where.port),
        pgdata=str(where.pgdata),
        bin_dir=str(bin_dir),
        os_user=getattr(where, "os_user", None) or "postgres",
        user=getattr(opts, "user", None) or "postgres",
        password=_resolve(getattr(opts, "password", None)),
        dbname=getattr(opts, "dbname", None) or "postgres",
        replication_user=getattr(opts, "replication_user", None),
        replication_password=_resolve(getattr(opts, "replication_password", None)),
        connect_timeout=float(getattr(opts, "connect_timeout", None) or 2.0),
        conf_dir=getattr(where, "conf_dir", None),
        log_file=getattr(where, "log_file", None),
    )


def _conninfo(params: dict[str, Any]) -> str:
    """libpq's conninfo string, quoted by psycopg (imported here, on first use, so that
    commands which never reach PostgreSQL do not pay for loading it)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(**params)
