"""Process control of one node through its Host: initdb, start, stop, kill, promote.

Timing matters in a switchover: stock ``pg_ctl -w`` / ``pg_promote(wait => true)``
poll every 100 ms and add 60-80 ms each to the write-unavailability window
(switchover note 1). So we start without waiting and stop by signalling the
postmaster ourselves, then poll briefly on our own.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import (
    PgCommandFailed,
    PgError,
    PgNotReady,
    PgStateError,
    PgTimeout,
    PgUnreachable,
)
from failback.drivers.postgres.lsn import parse_lsn
from failback.drivers.postgres.node import PgNode
from failback.hosts.base import CommandResult, Host

#: Messages and output parsed by the driver must not be translated.
C_LOCALE = {"LC_ALL": "C", "LANG": "C", "LC_MESSAGES": "C"}

STOP_SIGNALS = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}

CLEAN_STATES = ("shut down", "shut down in recovery")


#: libpq settings that are not secrets, passed on to pg_rewind / pg_basebackup when
#: failback's own environment sets them, so those programs connect the way failback's own
#: connections do (a password belongs in the topology, as a secret reference).
LIBPQ_SETTINGS = (
    "PGPASSFILE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGCONNECT_TIMEOUT",
)


def pg_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a PostgreSQL program: C locale, the libpq settings failback
    itself runs with, and ``extra`` (PGPASSWORD) - never failback's whole environment."""
    env = {k: os.environ[k] for k in LIBPQ_SETTINGS if k in os.environ}
    env.update(C_LOCALE)
    if extra:
        env.update(extra)
    return env


def run_pg(
    host: Host,
    node: PgNode,
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    what: str | None = None,
    check: bool = True,
) -> CommandResult:
    """Run a PostgreSQL program as the node's OS user, in the C locale.

    Raises PgCommandFailed naming the program and the tail of its output when
    ``check`` and it fails. ``env`` may carry PGPASSWORD: never argv, which ``ps`` shows.
    """
    result = host.run(
        argv, timeout=timeout, as_user=node.os_user, env=pg_env(env), input_text=input_text
    )
    if check and not result.ok:
        program = os.path.basename(argv[0])
        raise PgCommandFailed(
            f"{node.site}: {what or program} failed on {host.name} "
            f"(exit {result.returncode}): {result.tail()}",
            hint=f"see the output above; the command was run as OS user {node.os_user!r}",
        )
    return result


# --------------------------------------------------------------------------- files


def pgdata_ok(host: Host, node: PgNode) -> bool:
    """A data directory exists (PG_VERSION is the first file initdb writes)."""
    return host.exists(os.path.join(node.pgdata, "PG_VERSION"))


def postmaster_pid_text(host: Host, node: PgNode) -> str | None:
    """The text of pgdata/postmaster.pid, or None when there is no such file."""
    path = os.path.join(node.pgdata, "postmaster.pid")
    try:
        return host.read_text(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:  # pragma: no cover - only when not root
        raise PgError(f"{node.site}: cannot read {path}: {exc}") from exc


def postmaster_pid_file(
    host: Host, node: PgNode, *, text: str | None = None
) -> tuple[int, str] | None:
    """(pid, status) from pgdata/postmaster.pid, or None when there is no such file.
    ``text``: the file as just read (``postmaster_pid_text``), else it is read here.

    Line 8 is the postmaster's own status ("starting", "stopping", "ready",
    "standby"): what ``pg_ctl -w`` watches, read here without spawning a process.
    """
    if text is None:
        text = postmaster_pid_text(host, node)
        if text is None:
            return None
    lines = text.splitlines()
    if not lines or not lines[0].strip().isdigit():
        return None  # being written right now
    status = lines[7].strip() if len(lines) > 7 else ""
    return int(lines[0].strip()), status


def running_postmaster(host: Host, node: PgNode, *, text: str | None = None) -> int | None:
    """The PID of this node's live postmaster, or None.

    The PID from postmaster.pid is only trusted when that process is alive and its
    working directory is this data directory: a stale file after a crash may name a
    PID the kernel has given to an unrelated process, and we signal as root. The
    kernel gives the working directory as its real path: when that is ``pgdata`` as
    written, ``pgdata`` is its own real path and is not resolved again (a ``realpath``
    is a system call per path component: the monitor observes every second).

    ``text``: postmaster.pid as the caller just read it (an observation reads it once:
    over SSH each read is a round trip, and one read is one consistent view of it).
    """
    info = postmaster_pid_file(host, node, text=text)
    if info is None:
        return None
    pid = info[0]
    if not host.pid_alive(pid):
        return None
    cwd = host.process_cwd(pid)
    if cwd is not None and cwd != node.pgdata and cwd != host.realpath(node.pgdata):
        return None
    _refuse_foreign_postmaster(host, node, pid, text=text)
    return pid


def _refuse_foreign_postmaster(
    host: Host, node: PgNode, pid: int, *, text: str | None = None
) -> None:
    """Refuse to act on a live postmaster that listens on another port than the node's.

    That is a topology whose pgdata names another site's data directory: stopping or
    rewinding it would hit the wrong server (seen: a planned failover stopped the
    standby it was about to promote).
    """
    try:
        if text is None:
            text = host.read_text(os.path.join(node.pgdata, "postmaster.pid"))
        lines = text.splitlines()
        port = int(lines[3].strip())
    except (OSError, IndexError, ValueError):
        return
    if port != node.port:
        raise PgStateError(
            f"{node.site}: {node.pgdata} belongs to the PostgreSQL server on port {port} "
            f"(pid {pid}), not to {node.address}",
            hint="pgdata of that site in the topology file points at another server's data "
            "directory; fix it before anything is stopped or resynced",
        )


def controldata(host: Host, node: PgNode) -> dict[str, str]:
    """pg_controldata of the node as a dict ("Latest checkpoint location": "0/3000028")."""
    result = run_pg(host, node, [node.bin("pg_controldata"), "-D", node.pgdata], timeout=30)
    data: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            data[key.strip()] = value.strip()
    return data


def checkpoint_lsn(cd: Mapping[str, str]) -> int:
    return parse_lsn(cd["Latest checkpoint location"])


def rewind_possible_from_controldata(cd: Mapping[str, str]) -> bool:
    """pg_rewind needs data checksums or wal_log_hints=on (as of the last checkpoint)."""
    checksums = cd.get("Data page checksum version", "0").strip() not in ("0", "")
    hints = cd.get("wal_log_hints setting", "off").strip() == "on"
    return checksums or hints


# --------------------------------------------------------------------------- initdb


def initdb(
    host: Host,
    node: PgNode,
    *,
    data_checksums: bool = True,
    wal_segsize_mb: int = 1,
    settings: Mapping[str, Any] | None = None,
    locale: str = "C",
    sync: bool = True,
    superuser: str | None = None,
) -> None:
    """Create a new cluster in ``node.pgdata`` (which must not hold one).

    Checksums on by default so pg_rewind is possible later; 1 MB WAL segments
    because a promotion creates and fsyncs a new segment (note: ~5 ms faster).
    ``settings`` are appended to postgresql.conf. ``sync=False`` (initdb -N) is for
    throw-away test clusters only.
    """
    if pgdata_ok(host, node):
        raise PgStateError(
            f"{node.site}: {node.pgdata} already holds a PostgreSQL data directory",
            hint="initdb never overwrites data; choose another pgdata or move it away",
        )
    host.make_dirs(node.pgdata, owner=node.os_user, mode=0o700)
    argv = [
        node.bin("initdb"),
        "-D",
        node.pgdata,
        "-U",
        superuser or node.os_user,
        "-E",
        "UTF8",
        f"--locale={locale}",
        f"--wal-segsize={wal_segsize_mb}",
        "--auth-local=peer",
        "--auth-host=scram-sha-256",
        "--no-instructions",
    ]
    if data_checksums:
        argv.append("--data-checksums")
    if not sync:
        argv.append("--no-sync")
    run_pg(host, node, argv, timeout=300, what="initdb")
    if settings:
        conf = os.path.join(node.pgdata, "postgresql.conf")
        text = host.read_text(conf)
        lines = ["", "# added by failback initdb"]
        lines += [f"{key} = {_conf_value(value)}" for key, value in settings.items()]
        host.write_text(conf, text + "\n".join(lines) + "\n", owner=node.os_user, mode=0o600)


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------- start


def _log_size(host: Host, node: PgNode) -> int:
    result = host.run(["stat", "-c", "%s", node.server_log], timeout=10)
    try:
        return int(result.stdout.strip()) if result.ok else 0
    except ValueError:
        return 0


def log_since(host: Host, node: PgNode, offset: int, limit: int = 4000) -> str:
    """The server log written after ``offset`` (at most ``limit`` trailing chars)."""
    result = host.run(["tail", "-c", f"+{offset + 1}", node.server_log], timeout=10)
    return result.stdout[-limit:] if result.ok else ""


def _log_problem(text: str) -> str | None:
    """The last FATAL/PANIC line of a startup log (plus a bind error), for one line."""
    problem = None
    bind = None
    for line in text.splitlines():
        for marker in ("FATAL:", "PANIC:"):
            if marker in line:
                problem = line.split(marker, 1)[1].strip()
        if "could not bind" in line and "LOG:" in line:
            bind = line.split("LOG:", 1)[1].strip()
    if problem and bind:
        return f"{problem} ({bind})"
    return problem


_RETRYABLE_START = (
    "pre-existing shared memory block",  # children of a SIGKILLed postmaster still exiting
    'lock file "postmaster.pid" already exists',  # its zombie not reaped yet (note 10)
)


def start(
    host: Host,
    node: PgNode,
    *,
    timeout: float = 60.0,
    poll: float = 0.01,
    options: Sequence[str] = (),
    check_connect: bool = True,
) -> float:
    """Start the node and return once it accepts connections; returns seconds taken.

    ``pg_ctl start -W`` (no waiting) then our own ~10 ms polling of the postmaster's
    status line, confirmed by a real connection (liveness is judged by connecting,
    note 10). The port goes on the command line (``-o "-p PORT"``) so per-node
    settings survive pg_rewind copying the source's config files (note 4).
    Idempotent: an already running node is just waited for. A stale postmaster.pid
    of a SIGKILLed postmaster is waited out (its zombie, then its children).
    """
    started = time.monotonic()
    deadline = started + timeout
    if not pgdata_ok(host, node):
        raise PgStateError(
            f"{node.site}: no PostgreSQL data directory at {node.pgdata} (PG_VERSION missing)",
            hint="resync (re-clone) this node or fix pgdata in the topology",
        )
    wait_stale_postmaster(host, node, timeout=max(0.0, deadline - time.monotonic()))
    offset = _log_size(host, node)
    if running_postmaster(host, node) is None:
        offset = _launch(host, node, options=options, deadline=deadline, poll=poll)
    _wait_ready(
        host, node, deadline=deadline, poll=poll, check_connect=check_connect, offset=offset
    )
    return time.monotonic() - started


def _launch(
    host: Host, node: PgNode, *, options: Sequence[str], deadline: float, poll: float
) -> int:
    """pg_ctl start -W, retried while a killed postmaster's leftovers block it; returns
    the log offset where this start's messages begin."""
    opts = " ".join([f"-p {int(node.port)}", *options])
    while True:
        offset = _log_size(host, node)
        result = run_pg(
            host,
            node,
            [
                node.bin("pg_ctl"),
                "start",
                "-W",
                "-D",
                node.ctl_dir,
                "-l",
                node.server_log,
                "-o",
                opts,
            ],
            timeout=30,
            check=False,
        )
        if not result.ok:
            raise PgCommandFailed(
                f"{node.site}: pg_ctl start failed: {result.tail()}",
                hint=f"see the server log {node.server_log}",
            )
        problem = _watch_launch(host, node, offset=offset, deadline=deadline, poll=poll)
        if problem is None:
            return offset
        if any(marker in problem for marker in _RETRYABLE_START) and time.monotonic() < deadline:
            time.sleep(0.02)
            continue
        raise PgCommandFailed(
            f"{node.site}: PostgreSQL did not start: {problem}",
            hint=f"see the server log {node.server_log}",
        )


def _watch_launch(
    host: Host, node: PgNode, *, offset: int, deadline: float, poll: float
) -> str | None:
    """Wait until a postmaster owns the data directory; return a problem if it died."""
    checks = 0
    while time.monotonic() < deadline:
        if running_postmaster(host, node) is not None:
            return None
        checks += 1
        if checks % 10 == 0:  # ~every 100 ms: did it die before writing its lock file?
            problem = _log_problem(log_since(host, node, offset))
            if problem is not None and running_postmaster(host, node) is None:
                return problem
        time.sleep(poll)
    problem = _log_problem(log_since(host, node, offset))
    raise PgTimeout(
        f"{node.site}: PostgreSQL did not start within the timeout"
        + (f" ({problem})" if problem else ""),
        hint=f"see the server log {node.server_log}",
    )


def _wait_ready(
    host: Host, node: PgNode, *, deadline: float, poll: float, check_connect: bool, offset: int
) -> None:
    last: Exception | None = None
    while time.monotonic() < deadline:
        info = postmaster_pid_file(host, node)
        pid = running_postmaster(host, node)
        if pid is None:
            problem = _log_problem(log_since(host, node, offset)) or "postmaster exited"
            raise PgCommandFailed(
                f"{node.site}: PostgreSQL stopped while starting: {problem}",
                hint=f"see the server log {node.server_log}",
            )
        if info is not None and info[1] in ("ready", "standby"):
            if not check_connect:
                return
            try:
                connect(node, timeout=2).close()
                return
            except (PgNotReady, PgUnreachable) as exc:
                last = exc
        time.sleep(poll)
    raise PgTimeout(
        f"{node.site}: PostgreSQL at {node.address} did not accept connections in time"
        + (f" ({last})" if last else ""),
        hint="a standby without hot_standby never accepts connections; see the server log "
        f"{node.server_log}",
    )


# --------------------------------------------------------------------------- stop


def wait_pid_gone(
    host: Host,
    pid: int,
    *,
    timeout: float = 30.0,
    poll: float = 0.001,
    zombie_is_gone: bool = False,
) -> float:
    """Wait until ``pid`` is gone; returns seconds waited.

    By default a zombie counts as still there: a SIGKILLed postmaster stays a zombie
    for 1-2 s and PostgreSQL's lock-file check still sees it (note 10).
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        present = host.pid_alive(pid) if zombie_is_gone else host.pid_exists(pid)
        if not present:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise PgTimeout(
                f"process {pid} still exists after {timeout:g}s",
                hint="a zombie is reaped by its parent (init); check the process table",
            )
        time.sleep(poll)


def wait_stale_postmaster(host: Host, node: PgNode, *, timeout: float = 30.0) -> float:
    """After a crash/SIGKILL: wait until the PID in a stale postmaster.pid is gone.

    Its zombie keeps PostgreSQL's lock-file check failing for 1-2 s (note 10). A live
    process under that PID that is *not* in this data directory is an unrelated one
    that inherited the number: not waited for. Returns seconds waited.
    """
    info = postmaster_pid_file(host, node)
    if info is None or running_postmaster(host, node) is not None:
        return 0.0
    pid = info[0]
    if host.pid_alive(pid):
        cwd = host.process_cwd(pid)
        if cwd is not None and cwd != host.realpath(node.pgdata):
            return 0.0
    return wait_pid_gone(host, pid, timeout=timeout)


def stop(
    host: Host, node: PgNode, *, mode: str = "fast", timeout: float = 60.0, poll: float = 0.001
) -> int:
    """Stop the node and return its latest checkpoint location (an int LSN).

    Signals the postmaster (fast = SIGINT) and polls every 1 ms for it to exit,
    instead of ``pg_ctl stop -w`` which polls every 100 ms (note 1). After a clean
    fast/smart stop that location is the shutdown checkpoint: the final position a
    standby must replay (note 2). Idempotent: a stopped node just reports it.
    """
    if mode not in STOP_SIGNALS:
        raise ValueError(f"unknown stop mode {mode!r} (smart, fast, immediate)")
    pid = running_postmaster(host, node)
    if pid is not None:
        host.kill(pid, STOP_SIGNALS[mode])
        started = time.monotonic()
        while host.pid_alive(pid):
            if time.monotonic() - started > timeout:
                raise PgTimeout(
                    f"{node.site}: PostgreSQL (pid {pid}) did not stop within {timeout:g}s "
                    f"({mode} mode)",
                    hint="a smart stop waits for clients; use fast, or immediate as a last resort",
                )
            time.sleep(poll)
    return checkpoint_lsn(controldata(host, node))


def kill_postmaster(host: Host, node: PgNode) -> int | None:
    """SIGKILL the server (crash simulation / last-resort fence). Returns its PID.

    The postmaster and every backend: each backend leads a process group of its own
    and outlives its postmaster until it next looks — one busy in a query runs on,
    and one in the middle of a commit still acknowledges it: a write on a server
    already fenced, which its standby may never receive. The PID stays a zombie for a
    while: use ``wait_pid_gone`` before restarting.
    """
    pid = running_postmaster(host, node)
    if pid is not None:
        # still this data directory's postmaster (its PID was read a moment ago)
        host.kill_tree(pid, signal.SIGKILL, expect_cwd=node.pgdata)
        # Delivery is asynchronous: return once it is dead (a zombie counts as dead).
        wait_pid_gone(host, pid, timeout=10, zombie_is_gone=True)
    return pid


# --------------------------------------------------------------------------- SQL


def current_timeline(conn: Any) -> int:
    """Timeline of a primary's WAL insert position (pg_control lags after a promotion)."""
    row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()
    return int(row[0][:8], 16)


def promote(node: PgNode, *, timeout: float = 60.0, poll: float = 0.002) -> int:
    """Promote a standby; returns the new timeline.

    ``pg_promote(wait => false)`` then our own 2 ms polling of pg_is_in_recovery()
    (``wait => true`` polls every 100 ms, note 1). Idempotent on a primary.
    """
    with connect(node) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]  # type: ignore[index]
        if in_recovery:
            conn.execute("SELECT pg_promote(wait => false)")
            started = time.monotonic()
            while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                if time.monotonic() - started > timeout:
                    raise PgTimeout(
                        f"{node.site}: promotion did not finish within {timeout:g}s",
                        hint="see the server log; the node may still be replaying WAL",
                    )
                time.sleep(poll)
        return current_timeline(conn)


def promoted_or_requested(node: PgNode, *, timeout: float, poll: float = 0.01) -> bool:
    """Whether the node is a primary, waiting up to ``timeout`` for a promotion that was
    already asked for and not yet acted on (the signal file ``pg_promote`` leaves in the
    data directory, read with ``pg_stat_file``, is still there: the startup process
    removes it when it begins). A step resumed after its runner died inside ``promote``
    waits for that request instead of sending a second one. One query when nothing is
    pending: this runs inside the write-unavailability window. A server that cannot be
    asked (or goes away meanwhile) is not known to be promoted: False."""
    import psycopg  # loaded by connect already

    try:
        with connect(node, timeout=2) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(),"
                " (pg_stat_file('promote', true)).modification IS NOT NULL"
            ).fetchone()
            if row is None or not row[0]:
                return row is not None
            if not row[1]:
                return False
            started = time.monotonic()
            while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
                if time.monotonic() - started > timeout:
                    return False
                time.sleep(poll)
    except (PgError, psycopg.Error):
        return False
    return True


def checkpoint(node: PgNode) -> None:
    """CHECKPOINT: before pg_rewind from a fresh primary (note 3), or to shorten recovery."""
    with connect(node) as conn:
        conn.execute("CHECKPOINT")


def reload(node: PgNode) -> None:
    """Make the server re-read its configuration (pg_reload_conf)."""
    with connect(node) as conn:
        conn.execute("SELECT pg_reload_conf()")
