"""Bring a returning node back in line with the current primary: nothing, rewind, or re-clone.

Order of preference: a node that did not diverge only needs its standby config;
a diverged node is rewound (fast: only changed blocks); a node that cannot be
rewound (no checksums and wal_log_hints off, split brain on one timeline, a
failed pg_rewind, a lost data directory) is re-cloned. A re-clone never deletes
the old data directory: it is moved aside as ``<pgdata>.failback-old-<time>``.
And it moves aside nothing else: a non-empty directory at ``pgdata`` that is not
a data directory of this cluster (a mistyped path, a volume holding other files,
another cluster) is refused, never renamed (``pgdata_contents``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from failback.drivers.postgres.capture_slots import drop_slot_files
from failback.drivers.postgres.conn import query_one
from failback.drivers.postgres.divergence import (
    Divergence,
    check_divergence,
    require_same_system,
)
from failback.drivers.postgres.errors import (
    PgCommandFailed,
    PgError,
    PgRewindFailed,
    PgStateError,
)
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import (
    CLEAN_STATES,
    checkpoint,
    controldata,
    pgdata_ok,
    rewind_possible_from_controldata,
    run_pg,
    running_postmaster,
    start,
    stop,
    wait_stale_postmaster,
)
from failback.drivers.postgres.replication import configure_standby
from failback.errors import SafetyRefusal
from failback.hosts.base import Host


class PgdataNotOurs(PgError, SafetyRefusal):
    """What is at a node's pgdata is not a data directory of this cluster: left alone."""


PgdataContents = Literal["absent", "empty", "this-cluster", "partial-clone"]


def clone_marker(node: PgNode) -> str:
    """The file that says "pgdata holds a copy in progress" while pg_basebackup runs.

    Beside pgdata, not in it (pg_basebackup wants an empty directory). When the runner
    dies during a copy, the marker is what lets the next re-clone recognise the partial
    copy as its own, although it has no PG_VERSION or pg_control yet.
    """
    return f"{node.pgdata.rstrip('/')}.failback-cloning"


def pgdata_contents(host: Host, node: PgNode, source: PgNode) -> PgdataContents:
    """What a re-clone of ``node`` from ``source`` would find at its pgdata.

    * ``absent``, ``empty``: nothing to move aside;
    * ``this-cluster``: a data directory whose system identifier is the source's
      (its pg_control says so): moved aside, kept;
    * ``partial-clone``: our own copy interrupted (the clone marker is there and
      pg_control is not readable yet): moved aside, kept.

    Anything else raises ``PgdataNotOurs`` and nothing is touched: a file, a non-empty
    directory without PG_VERSION (e.g. ``/var/lib/important``), another cluster's data,
    a data directory whose pg_control cannot be read. Reads only.
    """
    pgdata = node.pgdata
    if not host.exists(pgdata):
        return "absent"
    hint = (
        f"check pgdata of {node.site} in the topology file; if what is there may go, "
        "move it away yourself, then `failback resume`"
    )
    try:
        names = host.list_dir(pgdata)
    except NotADirectoryError:
        raise PgdataNotOurs(
            f"{node.site}: {pgdata} is a file, not a data directory; a re-clone will not "
            "move it aside",
            hint=hint,
        ) from None
    if not names:
        return "empty"
    partial = host.exists(clone_marker(node))
    if "PG_VERSION" not in names:
        if partial:
            return "partial-clone"
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise PgdataNotOurs(
            f"{node.site}: {pgdata} is not empty ({shown}) and is not a PostgreSQL data "
            "directory (no PG_VERSION); a re-clone will not move it aside",
            hint=hint,
        )
    result = run_pg(host, node, [node.bin("pg_controldata"), "-D", pgdata], timeout=30, check=False)
    system = _system_identifier(result.stdout) if result.ok else None
    if system is None:
        if partial:
            return "partial-clone"
        raise PgdataNotOurs(
            f"{node.site}: {pgdata} has PG_VERSION but pg_controldata cannot read it "
            f"({result.tail() or 'no system identifier'}); a re-clone will not move it aside",
            hint=hint,
        )
    (wanted,) = query_one(source, "SELECT system_identifier FROM pg_control_system()")
    if system != int(wanted):
        raise PgdataNotOurs(
            f"{node.site}: {pgdata} holds another cluster (system identifier {system}, "
            f"{source.site} has {wanted}); a re-clone will not move it aside",
            hint=hint,
        )
    return "this-cluster"


def _system_identifier(controldata_output: str) -> int | None:
    for line in controldata_output.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Database system identifier" and value.strip().isdigit():
            return int(value.strip())
    return None


@dataclass
class RewindResult:
    duration_s: float
    clean_shutdown: str  # "none" | "single-user" | "restricted-start": what made it clean
    output: str  # pg_rewind's own summary ("servers diverged at WAL location ...")
    checkpoint_s: float = 0.0  # CHECKPOINT on the source
    pg_rewind_s: float = 0.0  # pg_rewind itself


@dataclass
class RecloneResult:
    duration_s: float
    moved_to: str | None  # where the old data directory went (never deleted)


@dataclass
class ResyncResult:
    method: str  # "none" | "rewind" | "reclone"
    reason: str
    duration_s: float
    divergence: Divergence | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["divergence"] = None if self.divergence is None else self.divergence.to_dict()
        return data


def _stop_if_running(host: Host, node: PgNode, timeout: float) -> None:
    if running_postmaster(host, node) is not None:
        stop(host, node, mode="fast", timeout=timeout)
    # A dead postmaster's zombie / lock file must be gone before anything restarts it.
    wait_stale_postmaster(host, node, timeout=timeout)


def ensure_clean_shutdown(host: Host, node: PgNode, *, timeout: float = 300.0) -> str:
    """Make a stopped node's data directory *cleanly* shut down (pg_rewind requires it).

    * crashed as a primary (no standby.signal): ``postgres --single`` runs crash
      recovery and writes a shutdown checkpoint when its stdin closes; it opens no
      socket at all, so no client can write meanwhile. This is what pg_rewind 13+ does
      itself; we do it explicitly to time it, report it, and honour ``conf_dir``.
    * crashed as a standby (single-user mode refuses standby.signal): a start as a
      standby with no listen address, a private socket directory inside pgdata and no
      primary_conninfo (so it only replays local WAL), then a fast stop.

    Returns "none", "single-user" or "restricted-start".
    """
    cd = controldata(host, node)
    if cd.get("Database cluster state") in CLEAN_STATES:
        return "none"
    wait_stale_postmaster(host, node, timeout=timeout)
    standby = host.exists(os.path.join(node.pgdata, "standby.signal"))
    if not standby:
        run_pg(
            host,
            node,
            [node.bin("postgres"), "--single", "-D", node.ctl_dir, "template1"],
            input_text="",
            timeout=timeout,
            what="crash recovery in single-user mode",
        )
        how = "single-user"
    else:
        options = [
            "-c listen_addresses=''",
            f"-c unix_socket_directories='{node.pgdata}'",
            "-c primary_conninfo=''",
            "-c hot_standby=on",
        ]
        start(host, node, timeout=timeout, options=options, check_connect=False)
        stop(host, node, mode="fast", timeout=timeout)
        how = "restricted-start"
    state = controldata(host, node).get("Database cluster state")
    if state not in CLEAN_STATES:
        raise PgStateError(
            f"{node.site}: still not cleanly shut down after {how} recovery (state: {state})",
            hint=f"see the server log {node.server_log}",
        )
    return how


def rewind(host: Host, node: PgNode, source: PgNode, *, timeout: float = 600.0) -> RewindResult:
    """pg_rewind ``node`` from the running ``source``, then configure it as its standby.

    Stops the node (fast) if it runs and makes its shutdown clean first. Runs
    CHECKPOINT on the source first: until a new primary's first checkpoint its
    pg_control still names the old timeline and the rewound node can refuse to start
    (note 3). pg_rewind copies the source's config files, so the standby config is
    rewritten afterwards (note 4). Raises PgRewindFailed on any pg_rewind failure.
    """
    started = time.monotonic()
    _stop_if_running(host, node, timeout)
    how = ensure_clean_shutdown(host, node, timeout=timeout)
    t_ckpt = time.monotonic()
    checkpoint(source)
    checkpoint_s = time.monotonic() - t_ckpt
    conninfo = source.dsn(dbname=source.dbname)
    env = {"PGPASSWORD": source.password} if source.password else {}
    result = run_pg(
        host,
        node,
        [
            node.bin("pg_rewind"),
            "--target-pgdata",
            node.pgdata,
            "--source-server",
            conninfo,
            "--no-ensure-shutdown",
        ],
        env=env,
        timeout=timeout,
        check=False,
    )
    if not result.ok:
        raise PgRewindFailed(
            f"{node.site}: pg_rewind from {source.site} failed: {result.tail()}",
            hint="a re-clone (pg_basebackup) from the source always works",
        )
    _drop_copied_log(host, node)
    configure_standby(host, node, source)
    summary = " | ".join(
        line.replace("pg_rewind: ", "").strip()
        for line in (result.stderr + result.stdout).splitlines()
        if line.strip()
    )
    return RewindResult(time.monotonic() - started, how, summary, checkpoint_s, result.duration_s)


def _drop_copied_log(host: Host, node: PgNode) -> None:
    """A server log inside pgdata is the source's after a copy: not this node's history."""
    if node.log_file is None and host.exists(node.server_log):
        host.remove(node.server_log)


def reclone(host: Host, node: PgNode, source: PgNode, *, timeout: float = 3600.0) -> RecloneResult:
    """Replace the node's data with a fresh pg_basebackup of ``source``, as its standby.

    The old data directory is moved aside to ``<pgdata>.failback-old-<time>``, never
    deleted: it may hold the only copy of writes a split brain diverged. If the copy
    fails, the partial copy is moved aside and the old directory put back. A copy
    interrupted by the runner's death is moved aside as ``.failback-partial-<time>``
    by the next re-clone. Anything else at pgdata is refused (``pgdata_contents``).
    """
    started = time.monotonic()
    _stop_if_running(host, node, min(timeout, 300.0))
    moved_to: str | None = None
    contents = pgdata_contents(host, node, source)
    if contents == "this-cluster":
        moved_to = _aside(host, node, "old")
        host.rename(node.pgdata, moved_to)
    elif contents == "partial-clone":
        host.rename(node.pgdata, _aside(host, node, "partial"))
    host.make_dirs(node.pgdata, owner=node.os_user, mode=0o700)
    host.write_text(
        clone_marker(node),
        f"pg_basebackup from {source.site} into {node.pgdata}, started "
        f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n",
    )
    conninfo = source.replication_conninfo(application_name=f"{node.site}-clone")
    secret = source.replication_secret
    env = {"PGPASSWORD": secret} if secret else {}
    result = run_pg(
        host,
        node,
        [
            node.bin("pg_basebackup"),
            "--pgdata",
            node.pgdata,
            "--wal-method=stream",
            "--checkpoint=fast",
            "--no-password",
            "--dbname",
            conninfo,
        ],
        env=env,
        timeout=timeout,
        check=False,
    )
    if not result.ok:
        host.rename(node.pgdata, _aside(host, node, "partial"))
        if moved_to is not None:
            host.rename(moved_to, node.pgdata)
        host.remove(clone_marker(node))
        raise PgCommandFailed(
            f"{node.site}: pg_basebackup from {source.site} failed: {result.tail()}",
            hint=(
                "check the replication user/password and the pg_hba.conf 'replication' "
                f"entry on {source.site}; the old data directory was put back"
            ),
        )
    host.remove(clone_marker(node))
    host.make_dirs(node.pgdata, owner=node.os_user, mode=0o700)
    _drop_copied_log(host, node)
    configure_standby(host, node, source)
    return RecloneResult(time.monotonic() - started, moved_to)


def _aside(host: Host, node: PgNode, what: str) -> str:
    """A free ``<pgdata>.failback-<what>-<time>[-n]`` beside pgdata."""
    base = f"{node.pgdata.rstrip('/')}.failback-{what}-{time.strftime('%Y%m%dT%H%M%S')}"
    path, suffix = base, 1
    while host.exists(path):
        path, suffix = f"{base}-{suffix}", suffix + 1
    return path


def resync(
    host: Host,
    node: PgNode,
    source: PgNode,
    *,
    start_node: bool = True,
    timeout: float = 3600.0,
) -> ResyncResult:
    """Make ``node`` a standby of ``source`` by the cheapest safe means; say why.

    none: it has not diverged (configure as standby, start); rewind: it diverged and
    rewind is possible; reclone: rewind impossible or failed, split brain on one
    timeline, or no data directory. A node of a different cluster raises
    PgWrongCluster: it is never copied over automatically.
    """
    started = time.monotonic()
    details: dict[str, Any] = {}

    def done(method: str, reason: str, div: Divergence | None) -> ResyncResult:
        if running_postmaster(host, node) is None:  # a standby keeps no capture slot
            dropped = drop_slot_files(host, node)
            if dropped:
                details["capture_slots_dropped"] = dropped
        if start_node:
            details["start_s"] = round(start(host, node, timeout=min(timeout, 300.0)), 3)
        return ResyncResult(method, reason, time.monotonic() - started, div, details)

    if not pgdata_ok(host, node):
        result = reclone(host, node, source, timeout=timeout)
        details.update(reclone_s=round(result.duration_s, 3), moved_to=result.moved_to)
        return done("reclone", f"{node.site} has no data directory at {node.pgdata}", None)

    div = check_divergence(host, node, source)
    require_same_system(div, node, source)
    if not div.needs_rewind:
        if div.node_state in ("primary",):
            _stop_if_running(host, node, 300.0)
        configure_standby(host, node, source)
        return done("none", div.reason, div)

    if div.split_brain:
        result = reclone(host, node, source, timeout=timeout)
        details.update(reclone_s=round(result.duration_s, 3), moved_to=result.moved_to)
        return done("reclone", div.reason, div)

    _stop_if_running(host, node, 300.0)
    possible = rewind_possible_from_controldata(controldata(host, node))
    if possible:
        try:
            rw = rewind(host, node, source, timeout=timeout)
            details.update(
                rewind_s=round(rw.duration_s, 3),
                source_checkpoint_s=round(rw.checkpoint_s, 3),
                pg_rewind_s=round(rw.pg_rewind_s, 3),
                clean_shutdown=rw.clean_shutdown,
                pg_rewind=rw.output,
            )
            return done("rewind", div.reason, div)
        except PgRewindFailed as exc:
            why = f"{div.reason}; rewind failed ({exc.message}), re-cloned instead"
    else:
        why = (
            f"{div.reason}; rewind impossible ({node.site} has neither data checksums nor "
            "wal_log_hints=on), re-cloned instead"
        )
    result = reclone(host, node, source, timeout=timeout)
    details.update(reclone_s=round(result.duration_s, 3), moved_to=result.moved_to)
    return done("reclone", why, div)
