"""The drill's copy of a standby: where it lives, how it is made, started, promoted,
spoken to and removed — every process and file through the standby's Host.

The copy must never be mistaken for production, nor reach it:

* it is a ``pg_basebackup`` *of the standby* (``-X stream``, run on the standby's own
  machine): the primary is not asked for anything, and the standby keeps streaming;
* it starts with ``listen_addresses=''`` (no TCP at all) and a private unix socket
  directory (mode 0700, owned by the PostgreSQL OS user): no client can reach it by
  accident. Its own ``pg_hba.conf`` has one line, ``local all all trust``, and no
  ``replication`` line: nothing can stream from it (no walsender target);
* ``primary_conninfo``, ``primary_slot_name``, ``restore_command``,
  ``recovery_end_command`` and ``archive_cleanup_command`` are emptied and
  ``archive_mode=off``: it never asks production for WAL and never archives into
  production's archive (a promoted copy writes a new timeline: archived there, it
  would be read by production's own recovery);
* ``synchronous_standby_names`` is emptied: a promoted copy has no standby, and would
  otherwise wait for ever on its first commit.

These settings go on the postmaster's command line (``pg_ctl -o``), which outranks
``postgresql.conf`` and ``postgresql.auto.conf`` (and ``ALTER SYSTEM`` made in the
copy): whatever the standby's files say, the copy runs isolated.

Paths are computed from the standby's node and the drill's run id only, so any
process — the one that started the drill, a ``resume``, an ``abort`` after a SIGKILL —
finds the same copy to finish or to remove.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

from failback.drivers.postgres.errors import PgCommandFailed, PgError, PgTimeout
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import (
    postmaster_pid_file,
    run_pg,
    running_postmaster,
    start,
    wait_pid_gone,
)
from failback.hosts.base import CommandResult, Host

COPY_SUFFIX = ".failback-drill-"
"""``<pgdata>.failback-drill-<run id>``: beside the standby's data directory."""

SOCKET_ROOT = "/tmp"
"""Where the copy's private socket directory goes: short, so the socket's path stays
under the kernel's 107-byte limit whatever the data directory's path."""

SHARED_BUFFERS = "128MB"
"""The copy's shared_buffers: it serves a few checks, and must not take the memory of
the standby's machine (production's setting may be tens of GB)."""

HBA = (
    "# failback drill: reached only through its private socket directory (mode 0700)\n"
    "# no TCP (listen_addresses=''), no replication line: nothing streams from it\n"
    "local all all trust\n"
)

WRITE_TABLE = "failback_drill_write"
"""Where the drill's verified write goes (in the copy only)."""


@dataclass(frozen=True)
class DrillCopy:
    """The copy of ``standby`` made by drill ``run_id`` (in ``parent``, when given)."""

    standby: PgNode
    run_id: int
    parent: str | None = None
    """Directory the copy goes in; None: beside the standby's pgdata."""

    @property
    def copy_dir(self) -> str:
        base = os.path.basename(self.standby.pgdata.rstrip("/"))
        where = self.parent or os.path.dirname(self.standby.pgdata.rstrip("/"))
        return os.path.join(where, f"{base}{COPY_SUFFIX}{self.run_id}")

    @property
    def socket_dir(self) -> str:
        digest = hashlib.sha256(self.copy_dir.encode()).hexdigest()[:8]
        return os.path.join(SOCKET_ROOT, f"failback-drill-{self.run_id}-{digest}")

    @property
    def port(self) -> int:
        """The socket's number (``.s.PGSQL.<port>``); nothing listens on TCP."""
        return self.standby.port

    @property
    def hba_file(self) -> str:
        return os.path.join(self.copy_dir, "failback-drill-hba.conf")

    @property
    def ident_file(self) -> str:
        return os.path.join(self.copy_dir, "failback-drill-ident.conf")

    @property
    def log_file(self) -> str:
        return os.path.join(self.copy_dir, "failback-drill.log")

    @property
    def done_marker(self) -> str:
        """Written once the copy is complete and configured (the copy step's check)."""
        return os.path.join(self.copy_dir, "failback-drill.copied")

    @property
    def node(self) -> PgNode:
        """The copy as a node: its data directory, its socket directory as the host."""
        return replace(
            self.standby,
            site=f"{self.standby.site}-drill",
            host=self.socket_dir,
            pgdata=self.copy_dir,
            conf_dir=None,
            log_file=self.log_file,
        )

    def connect_hint(self, user: str, dbname: str) -> str:
        """How a person reaches the copy (on the standby's machine)."""
        return (
            f"sudo -u {self.standby.os_user} psql -h {self.socket_dir} -p {self.port}"
            f" -U {user} -d {dbname}"
        )

    def server_settings(self) -> dict[str, str]:
        """Command-line settings that isolate the copy (they outrank its files)."""
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": self.socket_dir,
            "unix_socket_permissions": "0700",
            "hba_file": self.hba_file,
            "ident_file": self.ident_file,
            "archive_mode": "off",
            "archive_command": "",
            "restore_command": "",
            "archive_cleanup_command": "",
            "recovery_end_command": "",
            "primary_conninfo": "",
            "primary_slot_name": "",
            "synchronous_standby_names": "",
            # a subscription copied from the standby must not start: its apply worker
            # would take changes from the publisher's slot that production never gets
            "max_logical_replication_workers": "0",
            "hot_standby": "on",
            "shared_buffers": SHARED_BUFFERS,
            "huge_pages": "try",
            "ssl": "off",
            "logging_collector": "off",
            "external_pid_file": os.path.join(self.copy_dir, "failback-drill-external.pid"),
            "cluster_name": f"failback-drill-{self.run_id}",
        }
        if self.standby.conf_dir:  # postgresql.conf lives elsewhere: included (see configure)
            settings["data_directory"] = self.copy_dir
        return settings

    def server_options(self) -> list[str]:
        """``pg_ctl -o`` words (pg_ctl hands them to a shell: quoted)."""
        return [f"-c {name}={shlex.quote(value)}" for name, value in self.server_settings().items()]


# --------------------------------------------------------------------------- space


@dataclass(frozen=True)
class Space:
    """What the copy needs and what the filesystem it goes to has."""

    need_bytes: int
    available_bytes: int
    filesystem_bytes: int
    reserve_bytes: int

    @property
    def enough(self) -> bool:
        return self.available_bytes - self.need_bytes >= self.reserve_bytes

    def to_dict(self) -> dict[str, int]:
        return {
            "need_bytes": self.need_bytes,
            "available_bytes": self.available_bytes,
            "filesystem_bytes": self.filesystem_bytes,
            "reserve_bytes": self.reserve_bytes,
        }


HEADROOM = 1.10
"""The copy is the standby's data directory as it is, plus the WAL written while it
is taken and after its promotion: 10% more than the standby's size."""

RESERVE_FRACTION = 0.05
RESERVE_MIN_BYTES = 256 * 1024 * 1024
"""What must stay free on that filesystem after the copy: the standby's own WAL lives
there (often), and a standby whose disk fills stops replicating."""


def _first_int(result: CommandResult, what: str, host: Host) -> list[int]:
    if not result.ok:
        raise PgCommandFailed(f"{what} failed on {host.name}: {result.tail()}")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    try:
        return [int(word) for word in lines[-1].split() if word.isdigit()]
    except IndexError as exc:
        raise PgCommandFailed(f"{what} printed nothing on {host.name}") from exc


def space_for(host: Host, copy: DrillCopy) -> Space:
    """The standby's size (``du``) against the free space where the copy goes (``df``)."""
    used = _first_int(
        host.run(
            ["du", "-sk", copy.standby.pgdata],
            timeout=120,
            as_user=copy.standby.os_user,
            env={"LC_ALL": "C"},
        ),
        f"du of {copy.standby.pgdata}",
        host,
    )
    parent = os.path.dirname(copy.copy_dir)
    df = _first_int(
        host.run(["df", "-Pk", parent], timeout=30, env={"LC_ALL": "C"}), f"df of {parent}", host
    )
    if not used or len(df) < 3:
        raise PgCommandFailed(f"cannot read the sizes of {copy.standby.pgdata} and {parent}")
    total, available = df[0] * 1024, df[2] * 1024
    return Space(
        need_bytes=int(used[0] * 1024 * HEADROOM),
        available_bytes=available,
        filesystem_bytes=total,
        reserve_bytes=max(RESERVE_MIN_BYTES, int(total * RESERVE_FRACTION)),
    )


def parent_usable(host: Host, copy: DrillCopy) -> bool:
    """The OS user can reach the directory the copy goes in (pg_basebackup writes there
    as that user, and the server runs from it)."""
    parent = os.path.dirname(copy.copy_dir)
    return host.run(["test", "-d", parent, "-a", "-x", parent], as_user=copy.standby.os_user).ok


# --------------------------------------------------------------------------- make


def copied(host: Host, copy: DrillCopy) -> bool:
    """The copy is complete and configured (its marker is written last)."""
    return host.exists(copy.done_marker)


def make_copy(host: Host, copy: DrillCopy, *, timeout: float = 3600.0) -> float:
    """``pg_basebackup -X stream`` of the standby into the copy's (empty) directory, on
    the standby's machine, then configure it; returns the seconds the copy took.

    ``--no-sync``: the copy is thrown away, and fsyncing gigabytes would only add I/O
    on the standby's machine. A copy left half-made by an interrupted drill is removed
    first by the caller (``remove``)."""
    node = copy.standby
    started = time.monotonic()
    host.make_dirs(copy.copy_dir, owner=node.os_user, mode=0o700)
    conninfo = node.replication_conninfo(application_name=f"failback-drill-{copy.run_id}")
    secret = node.replication_secret
    result = run_pg(
        host,
        node,
        [
            node.bin("pg_basebackup"),
            "--pgdata",
            copy.copy_dir,
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-sync",
            "--no-password",
            "--dbname",
            conninfo,
        ],
        env={"PGPASSWORD": secret} if secret else {},
        timeout=timeout,
        check=False,
    )
    if not result.ok:
        raise PgCommandFailed(
            f"{node.site}: pg_basebackup of the standby failed: {result.tail()}",
            hint=f"the standby at {node.address} must accept a replication connection from"
            " its own machine (pg_hba.conf 'replication' line, max_wal_senders)",
        )
    configure(host, copy)
    return time.monotonic() - started


def configure(host: Host, copy: DrillCopy) -> None:
    """The copy's own access rules, a standby.signal to promote it from, and its marker."""
    node = copy.standby
    owner = node.os_user
    for name in ("recovery.signal", "postmaster.pid", "postmaster.opts"):
        host.remove(os.path.join(copy.copy_dir, name))
    host.write_text(os.path.join(copy.copy_dir, "standby.signal"), "", owner=owner)
    host.write_text(copy.hba_file, HBA, owner=owner)
    host.write_text(copy.ident_file, "", owner=owner)
    if node.conf_dir:  # e.g. Debian: the configuration is outside the data directory
        include = os.path.join(node.conf_dir, "postgresql.conf").replace("'", "''")
        host.write_text(
            os.path.join(copy.copy_dir, "postgresql.conf"),
            f"include '{include}'\n",
            owner=owner,
        )
    host.write_text(copy.done_marker, f"failback drill {copy.run_id}\n", owner=owner)


# --------------------------------------------------------------------------- run


def copy_postmaster(host: Host, copy: DrillCopy) -> int | None:
    """The live postmaster of the copy, or None (also when the copy is gone)."""
    if not host.exists(os.path.join(copy.copy_dir, "PG_VERSION")):
        return None
    return running_postmaster(host, copy.node)


def start_copy(host: Host, copy: DrillCopy, *, timeout: float = 600.0) -> float:
    """Start the copy isolated and wait until it is a consistent standby (its
    postmaster says ``standby``) or already a primary; returns seconds taken."""
    started = time.monotonic()
    host.make_dirs(copy.socket_dir, owner=copy.standby.os_user, mode=0o700)
    start(host, copy.node, timeout=timeout, options=copy.server_options(), check_connect=False)
    return time.monotonic() - started


def postmaster_status(host: Host, copy: DrillCopy) -> str | None:
    """Line 8 of the copy's postmaster.pid: ``standby``, ``ready``, ``starting``..."""
    info = postmaster_pid_file(host, copy.node)
    return None if info is None else info[1]


def promote_copy(host: Host, copy: DrillCopy, *, timeout: float = 600.0) -> float:
    """``pg_ctl promote`` (without its 100 ms polling), then our own look every 10 ms
    until the copy says it is out of recovery; returns seconds taken.

    The postmaster's status line cannot tell: a hot standby already says ``ready``."""
    started = time.monotonic()
    if recovery_state(host, copy) != "f":
        node = copy.node
        run_pg(host, node, [node.bin("pg_ctl"), "promote", "-W", "-D", node.pgdata], timeout=60)
    deadline = started + timeout
    while (state := recovery_state(host, copy)) != "f":
        if time.monotonic() > deadline:
            raise PgTimeout(
                f"the drill's copy was not promoted within {timeout:g}s ({state})",
                hint=f"see its server log {copy.log_file}",
            )
        time.sleep(0.01)
    return time.monotonic() - started


def psql(
    host: Host,
    copy: DrillCopy,
    sql: str,
    *,
    user: str,
    dbname: str,
    timeout: float = 30.0,
) -> CommandResult:
    """Run ``sql`` in the copy with psql through its socket, on its machine (a remote
    unix socket cannot be reached from here); rows unaligned, one per line."""
    node = copy.node
    argv = [node.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    argv += ["-h", copy.socket_dir, "-p", str(copy.port), "-U", user, "-d", dbname]
    return run_pg(host, node, argv, input_text=sql, timeout=timeout, check=False)


def is_primary(host: Host, copy: DrillCopy) -> bool:
    """The copy answers and is out of recovery."""
    return recovery_state(host, copy) == "f"


def recovery_state(host: Host, copy: DrillCopy) -> str:
    """``f`` (a primary), ``t`` (in recovery), or why the copy could not be asked."""
    status = postmaster_status(host, copy)
    if status not in ("ready", "standby"):
        return f"its postmaster is {status or 'not running'}"
    result = psql(
        host,
        copy,
        "SELECT pg_is_in_recovery();",
        user=copy.standby.user,
        dbname=copy.standby.dbname,
        timeout=10,
    )
    return result.stdout.strip() if result.ok else result.tail()


def verified_write(host: Host, copy: DrillCopy, token: str) -> None:
    """A committed row in the copy, read back; PgCommandFailed otherwise."""
    literal = token.replace("'", "''")
    sql = (
        f"CREATE TABLE IF NOT EXISTS {WRITE_TABLE} (id bigserial PRIMARY KEY,"
        " token text NOT NULL, at timestamptz NOT NULL DEFAULT now());\n"
        f"INSERT INTO {WRITE_TABLE} (token) VALUES ('{literal}');\n"
        f"SELECT count(*), pg_is_in_recovery() FROM {WRITE_TABLE} WHERE token = '{literal}';\n"
    )
    result = psql(host, copy, sql, user=copy.standby.user, dbname=copy.standby.dbname)
    if not result.ok or result.stdout.strip().splitlines()[-1:] != ["1|f"]:
        raise PgCommandFailed(
            f"a write in the drill's copy was not verified: {result.tail() or result.stdout}",
            hint=f"see its server log {copy.log_file}",
        )


# --------------------------------------------------------------------------- remove


def stop_copy(host: Host, copy: DrillCopy, *, timeout: float = 30.0) -> int | None:
    """Stop the copy's postmaster (fast; SIGKILL of it and its children when that does
    not finish in ``timeout``); returns its PID, None when none ran."""
    pid = copy_postmaster(host, copy)
    if pid is None:
        return None
    host.kill(pid, signal.SIGINT)
    try:
        wait_pid_gone(host, pid, timeout=timeout, zombie_is_gone=True)
    except PgTimeout:
        host.kill_tree(pid, signal.SIGKILL, expect_cwd=copy.copy_dir)
        wait_pid_gone(host, pid, timeout=30, zombie_is_gone=True)
    return pid


def remove(host: Host, copy: DrillCopy) -> dict[str, Any]:
    """Stop the copy if it runs, then delete its directory and its socket directory.
    Idempotent: nothing there, nothing done."""
    if os.path.basename(copy.copy_dir).find(COPY_SUFFIX) < 1:  # pragma: no cover - by design
        raise PgError(f"refusing to remove {copy.copy_dir}: not a drill's copy")
    pid = stop_copy(host, copy)
    existed = host.exists(copy.copy_dir)
    host.remove(copy.copy_dir)
    host.remove(copy.socket_dir)
    return {"stopped_pid": pid, "removed": copy.copy_dir if existed else None}


def leftovers(host: Host, copy: DrillCopy) -> list[str]:
    """What of the copy is still there (empty once removed)."""
    found = [path for path in (copy.copy_dir, copy.socket_dir) if host.exists(path)]
    if copy_postmaster(host, copy) is not None:
        found.insert(0, "its postmaster")
    return found
