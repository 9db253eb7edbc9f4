"""The lab's PgBouncer: the database endpoint clients see a stall through, not errors.

Runs as the unprivileged OS user PostgreSQL runs as, in transaction pooling, with
the [databases] lines in a file of their own (``databases.ini``, %include-d) that
failback's pgbouncer driver rewrites on a switch.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from failback.hosts import Host
from failback.lab.errors import LabError

PGBOUNCER_BIN = "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class LabPool:
    """Where the lab's PgBouncer listens and keeps its files."""

    port: int
    dir: str
    database: str = "app"
    address: str = "127.0.0.1"
    """Where it listens: 127.0.0.1, or the edge namespace's address."""

    @property
    def config(self) -> str:
        return str(Path(self.dir) / "pgbouncer.ini")

    @property
    def databases_file(self) -> str:
        return str(Path(self.dir) / "databases.ini")

    @property
    def pidfile(self) -> str:
        return str(Path(self.dir) / "pgbouncer.pid")

    @property
    def logfile(self) -> str:
        return str(Path(self.dir) / "pgbouncer.log")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "config": self.config, "databases_file": self.databases_file}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabPool:
        return cls(
            port=int(data["port"]),
            dir=data["dir"],
            database=data.get("database", "app"),
            address=data.get("address", "127.0.0.1"),
        )


def render_config(pool: LabPool, *, admin_user: str) -> str:
    # server_login_retry low: a connection attempt that hit the stopped old primary must
    # not stall for the default 15 s (notes, PgBouncer)
    return "\n".join([
        "; written by failback lab",
        "[databases]",
        f"%include {pool.databases_file}",
        "[pgbouncer]",
        f"listen_addr = {pool.address}",
        f"listen_port = {pool.port}",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {Path(pool.dir) / 'userlist.txt'}",
        f"admin_users = {admin_user}",
        "pool_mode = transaction",
        f"logfile = {pool.logfile}",
        f"pidfile = {pool.pidfile}",
        "server_login_retry = 1",
        "server_connect_timeout = 2",
        # clients wait through a failover instead of failing; past this they get an error
        "query_wait_timeout = 30",
        "ignore_startup_parameters = extra_float_digits",
        "",
    ])  # fmt: skip


def write_files(
    h: Host,
    pool: LabPool,
    *,
    os_user: str,
    users: dict[str, str],
    target_port: int,
    target_address: str = "127.0.0.1",
) -> None:
    h.make_dirs(pool.dir, owner=os_user, mode=0o700)
    h.write_text(pool.config, render_config(pool, admin_user="failback"), owner=os_user)
    userlist = "".join(f'"{user}" "{password}"\n' for user, password in users.items())
    h.write_text(str(Path(pool.dir) / "userlist.txt"), userlist, owner=os_user)
    h.write_text(
        pool.databases_file,
        f"{pool.database} = host={target_address} port={target_port} dbname={pool.database}\n",
        owner=os_user, mode=0o640,
    )  # fmt: skip


def pool_pid(h: Host, pool: LabPool) -> int | None:
    try:
        pid = int(h.read_text(pool.pidfile).strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and h.pid_alive(pid) else None


def start_pool(h: Host, pool: LabPool, *, os_user: str, timeout: float = 10.0) -> int:
    """Start PgBouncer daemonized; return its PID once it accepts connections."""
    result = h.run([PGBOUNCER_BIN, "-d", pool.config], as_user=os_user, timeout=timeout)
    if not result.ok:
        raise LabError(f"PgBouncer did not start: {result.tail()}", hint=f"see {pool.logfile}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = pool_pid(h, pool)
        if pid is not None and _accepts(pool):
            return pid
        time.sleep(0.02)
    raise LabError(f"PgBouncer on port {pool.port} did not come up", hint=f"see {pool.logfile}")


def _accepts(pool: LabPool) -> bool:
    try:
        with psycopg.connect(
            host=pool.address,
            port=pool.port,
            dbname="pgbouncer",
            user="nobody-probe",
            connect_timeout=1,
        ):
            return True
    except psycopg.OperationalError as exc:
        # an authentication refusal proves it listens and speaks the protocol
        return "refused" not in str(exc).lower() and "timeout" not in str(exc).lower()


def stop_pool(h: Host, pool: LabPool) -> bool:
    """SIGTERM (immediate shutdown); True when one was running."""
    pid = pool_pid(h, pool)
    if pid is None:
        return False
    h.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while h.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return True
