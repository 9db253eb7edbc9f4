"""A throw-away PostgreSQL primary + streaming standby on 127.0.0.1 for integration tests.

Built only with the driver's own primitives (initdb, start, reclone) so that the
tests exercise them. Runs PostgreSQL as the ``postgres`` OS user (we run as root);
the base directory lives under /tmp and is owned by that user so it can traverse it.
Ports are picked below 32768 (the kernel's ephemeral range starts there, note 8)
and a start that loses a port race is retried on another port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from failback.drivers.postgres.errors import PgCommandFailed
from failback.drivers.postgres.node import PgNode, detect_bin_dir
from failback.drivers.postgres.process import initdb, start, stop
from failback.drivers.postgres.resync import reclone
from failback.hosts import LocalHost

OS_USER = "postgres"
ADMIN_USER, ADMIN_PASSWORD = "fbadmin", "admin-secret"
REPL_USER, REPL_PASSWORD = "replicator", "repl-secret"
APP_USER, APP_PASSWORD = "app", "app-secret"

HBA = """\
# written by tests/integration/pgcluster.py
local   all             all                                     peer
host    all             all             127.0.0.1/32            scram-sha-256
host    replication     {repl}          127.0.0.1/32            scram-sha-256
"""

BASE_SETTINGS: dict[str, object] = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "/tmp",
    "wal_level": "replica",
    "max_wal_senders": 10,
    "wal_keep_size": "128MB",
    "hot_standby": True,
    "shared_buffers": "16MB",
    "max_connections": 40,
    "logging_collector": False,
    "log_line_prefix": "%m [%p] ",
}


def free_port(taken: set[int] | None = None) -> int:
    """A TCP port on 127.0.0.1 that is free right now, below the ephemeral range."""
    taken = taken or set()
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found below 32768")


def make_node(base: str, site: str, port: int, bin_dir: str) -> PgNode:
    return PgNode(
        site=site,
        host="127.0.0.1",
        port=port,
        pgdata=os.path.join(base, site, "data"),
        bin_dir=bin_dir,
        os_user=OS_USER,
        user=ADMIN_USER,
        password=ADMIN_PASSWORD,
        dbname="postgres",
        replication_user=REPL_USER,
        replication_password=REPL_PASSWORD,
        connect_timeout=2.0,
        log_file=os.path.join(base, site, "postgresql.log"),
    )


def start_retrying_port(host: LocalHost, node: PgNode, **kwargs: object) -> PgNode:
    """Start ``node``; if another program took its port meanwhile, retry on a new one."""
    for _ in range(5):
        try:
            start(host, node, **kwargs)  # type: ignore[arg-type]
            return node
        except PgCommandFailed as exc:
            if "could not bind" not in exc.message and "TCP/IP" not in exc.message:
                raise
            node = dataclasses.replace(node, port=free_port({node.port}))
    raise RuntimeError(f"{node.site}: no port could be bound")


def _site_dir(host: LocalHost, base: str, site: str) -> None:
    host.make_dirs(os.path.join(base, site), owner=OS_USER, mode=0o755)


def create_primary(
    host: LocalHost,
    base: str,
    site: str,
    *,
    bin_dir: str,
    data_checksums: bool = True,
    wal_log_hints: bool = False,
) -> PgNode:
    """initdb + start + roles: admin (superuser), replicator, app (owns database app)."""
    _site_dir(host, base, site)
    node = make_node(base, site, free_port(), bin_dir)
    settings = dict(BASE_SETTINGS, wal_log_hints=wal_log_hints)
    initdb(host, node, data_checksums=data_checksums, settings=settings, sync=False)
    host.write_text(
        os.path.join(node.pgdata, "pg_hba.conf"),
        HBA.format(repl=REPL_USER),
        owner=OS_USER,
        mode=0o600,
    )
    node = start_retrying_port(host, node, check_connect=False, timeout=60)
    statements = [
        f"CREATE ROLE {ADMIN_USER} LOGIN SUPERUSER PASSWORD '{ADMIN_PASSWORD}'",
        f"CREATE ROLE {REPL_USER} LOGIN REPLICATION PASSWORD '{REPL_PASSWORD}'",
        f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'",
        f"CREATE DATABASE app OWNER {APP_USER}",
    ]
    argv = [node.bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp"]
    argv += ["-p", str(node.port), "-d", "postgres"]
    for statement in statements:
        argv += ["-c", statement]
    result = host.run(
        argv,
        as_user=OS_USER,
        timeout=60,
    )
    if not result.ok:
        raise RuntimeError(f"creating roles failed: {result.tail()}")
    start(host, node, timeout=30)  # now connects as the admin user: proves the roles work
    return node


def create_standby(host: LocalHost, base: str, site: str, primary: PgNode) -> PgNode:
    """A streaming standby of ``primary`` made with the driver's reclone (pg_basebackup)."""
    _site_dir(host, base, site)
    node = make_node(base, site, free_port({primary.port}), primary.bin_dir)
    reclone(host, node, primary, timeout=120)
    return start_retrying_port(host, node, timeout=60)


@dataclass
class PgPair:
    host: LocalHost
    base: str
    primary: PgNode
    standby: PgNode
    extra: list[PgNode] = field(default_factory=list)

    @property
    def nodes(self) -> list[PgNode]:
        return [self.primary, self.standby, *self.extra]


def teardown(host: LocalHost, base: str, nodes: list[PgNode]) -> None:
    for node in nodes:
        # best effort: a test may have removed or broken a node on purpose
        with contextlib.suppress(Exception):
            stop(host, node, mode="immediate", timeout=30)
    shutil.rmtree(base, ignore_errors=True)


def new_base() -> str:
    base = tempfile.mkdtemp(prefix="failback-pgtest-", dir="/tmp")
    os.chmod(base, 0o755)
    shutil.chown(base, OS_USER, OS_USER)
    return base


@contextmanager
def pg_pair(*, data_checksums: bool = True, wal_log_hints: bool = False) -> Iterator[PgPair]:
    """Primary "dc1" + streaming standby "dc2"; torn down (stopped, removed) afterwards."""
    host = LocalHost()
    bin_dir = detect_bin_dir(host)
    base = new_base()
    nodes: list[PgNode] = []
    pair: PgPair | None = None
    try:
        primary = create_primary(
            host,
            base,
            "dc1",
            bin_dir=bin_dir,
            data_checksums=data_checksums,
            wal_log_hints=wal_log_hints,
        )
        nodes.append(primary)
        standby = create_standby(host, base, "dc2", primary)
        nodes.append(standby)
        pair = PgPair(host, base, primary, standby)
        yield pair
    finally:
        teardown(host, base, (pair.nodes if pair else nodes))


@contextmanager
def pg_single(site: str = "dc9") -> Iterator[tuple[LocalHost, PgNode]]:
    """One standalone primary (a different cluster from any pair)."""
    host = LocalHost()
    base = new_base()
    node: PgNode | None = None
    try:
        node = create_primary(host, base, site, bin_dir=detect_bin_dir(host))
        yield host, node
    finally:
        teardown(host, base, [node] if node else [])
