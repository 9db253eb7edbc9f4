"""Read-only observation of one node (a *fact*, in pyinfra's words) and role labels.

``observe`` never changes anything and never raises for a node that is down or
refuses us: the answer says so, and the planner decides what it means.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

from failback.drivers.base import observe_time_left
from failback.drivers.kept import Kept, answer_at_hand, kept
from failback.drivers.postgres.conn import connect, current_timeline_sql
from failback.drivers.postgres.errors import PgAuthFailed, PgError, PgWrongCluster, PgWrongDatabase
from failback.drivers.postgres.lsn import format_lsn, parse_lsn, to_lsn
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.process import (
    controldata,
    pgdata_ok,
    postmaster_pid_file,
    postmaster_pid_text,
    rewind_possible_from_controldata,
    running_postmaster,
)
from failback.drivers.postgres.self_fence import MARK_FILE as SELF_FENCE_MARK
from failback.hosts.base import Host
from failback.hosts.ssh_errors import HostUnreachable

ROLES = ("primary", "standby", "down", "unknown", "stale-primary")


@dataclass
class ReplicaInfo:
    """One row of a primary's pg_stat_replication."""

    application_name: str
    client_addr: str | None
    state: str
    sync_state: str
    sent_lsn: int | None
    write_lsn: int | None
    flush_lsn: int | None
    replay_lsn: int | None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _REPLICA_FIELDS}
        for key in ("sent_lsn", "write_lsn", "flush_lsn", "replay_lsn"):
            data[key] = _fmt(data[key])
        return data


@dataclass
class PgObservation:
    """What one node looked like at ``observed_at``.

    role: "primary" | "standby" | "down" (nothing we could query) | "unknown" (it
    answers but refuses us: it may well be a primary, so the planner must not treat
    it as down). "stale-primary" is never set here: only ``classify`` can say it, from
    several observations and the active site.
    """

    site: str
    address: str
    observed_at: float
    reachable: bool = False
    role: str = "down"
    error: str | None = None
    system_identifier: int | None = None
    timeline: int | None = None
    current_lsn: int | None = None
    replay_lsn: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    streaming: bool = False
    upstream: str | None = None
    rewind_possible: bool | None = None
    data_checksums: bool | None = None
    postmaster_pid: int | None = None
    postmaster_alive: bool = False
    pgdata_ok: bool = False
    host_reachable: bool = True
    """False when the node's machine did not answer: the file facts (pgdata_ok,
    postmaster_*, pgdata_matches, cluster_state) are then unknown, not false."""
    cluster_state: str | None = None
    server_version: str | None = None
    data_directory: str | None = None
    pgdata_matches: bool | None = None
    synchronous_standby_names: str | None = None
    """The standbys this server waits for ('' none), as it uses the setting now."""
    read_only: bool | None = None
    """``default_transaction_read_only`` is on: new transactions cannot write."""
    self_fenced: bool | None = None
    """The server carries failback's self-fence mark (self_fence.py); None: not looked
    (only looked for when it is read-only) or its machine did not answer."""
    replicas: list[ReplicaInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: LSNs as PostgreSQL prints them, the 64-bit system id as a string."""
        # every field is a scalar but ``replicas``, made below: no deep copy (asdict)
        data = {name: getattr(self, name) for name in _OBSERVATION_FIELDS}
        for key in ("current_lsn", "replay_lsn"):
            data[key] = _fmt(data[key])
        if self.system_identifier is not None:
            data["system_identifier"] = str(self.system_identifier)
        data["replicas"] = [replica.to_dict() for replica in self.replicas]
        return data


_REPLICA_FIELDS = tuple(f.name for f in fields(ReplicaInfo))
_OBSERVATION_FIELDS = tuple(f.name for f in fields(PgObservation))


def _fmt(value: int | None) -> str | None:
    return None if value is None else format_lsn(value)


HOST_CONNECT_WAIT_S = 20.0
"""How long an observation waits for the machine of a server that answered SQL."""

HOST_ANSWER_S = 1.0
"""How long an observation waits for the node's machine to answer before it describes
the node from SQL alone: a dead or partitioned machine must not hold up the monitor
(or ``status``) for an SSH connect timeout."""


def observe(
    host: Host, node: PgNode, *, timeout: float | None = None, host_within: float = HOST_ANSWER_S
) -> PgObservation:
    """Observe one node: network first (one SQL connection), then its files through
    the host when the machine answers within ``host_within`` seconds.

    A node that cannot be queried and whose postmaster is not running is described
    from pg_controldata (system identifier, checkpoint timeline and location,
    cluster state), which a stopped or crashed node still has. A machine that does
    not answer leaves the file facts unknown (``host_reachable`` False): a server that
    answers SQL is still described in full, so a broken sshd never looks like a dead
    primary.

    Under ``keeping`` (the monitor's probes) the connection is kept for the
    next observation of the same server (``failback.drivers.kept``), which is then
    made on it: see ``_observe_kept``. And an observation of the same node (through the
    same machine) made by another probe within the scope's ``share_within`` seconds is
    shared, as HAProxy's answers are: many services may name one database (every one
    of them would otherwise send the same queries and read the same files each
    interval). Only a complete observation is shared: a node seen down or refusing us,
    or whose machine did not answer, is observed again by each probe that asks, so a
    failure is seen by every probe as soon as without sharing.
    """
    pool = kept()
    if pool is None:
        return _observe(host, node, timeout, host_within)
    return pool.recent(
        observation_key(host.name, node),
        lambda: _observe(host, node, timeout, host_within),
        share=_complete,
    )


def observation_key(host_name: str, node: PgNode) -> tuple[Any, ...]:
    """What a shared observation is an observation of: the node (every field: its
    address, user, password, data directory...) through the machine called ``host_name``."""
    return ("postgres-observation", host_name, node)


def observation_at_hand(host_name: str, node: PgNode) -> PgObservation | None:
    """The node's observation another probe made within the scope's ``share_within``
    seconds (``observe`` would share it), or None; never asks, never waits."""
    seen = answer_at_hand(observation_key(host_name, node))
    return seen if isinstance(seen, PgObservation) else None


def _complete(obs: PgObservation) -> bool:
    """Worth sharing: the server answered and so did its machine."""
    return obs.reachable and obs.host_reachable


def _observe(host: Host, node: PgNode, timeout: float | None, host_within: float) -> PgObservation:
    """``observe`` without sharing."""
    pool = kept()
    if pool is not None:
        obs = _observe_kept(pool, node, timeout)
        if obs is not None:
            # the server answered (its machine is up: worth its own wait, as below) or
            # did not within the connect timeout (the machine gets ``host_within``)
            wait = HOST_CONNECT_WAIT_S if obs.reachable else host_within
            return _with_machine(host, node, obs, host.reachable(observe_time_left(wait)))
    obs = PgObservation(site=node.site, address=node.address, observed_at=time.time())
    # the machine is asked while the SQL connection is tried: a dead site costs the
    # longer of the two waits, not their sum
    answers = ThreadPoolExecutor(max_workers=1)
    machine = answers.submit(host.reachable, observe_time_left(host_within))
    answers.shutdown(wait=False)
    try:
        conn = connect(node, timeout=timeout)
        try:
            fixed = _observe_sql(conn, obs)
        except BaseException:
            conn.close()
            raise
        obs.reachable = True
        if pool is not None:
            pool.give(server_key(node), (conn, fixed), conn.close)
        else:
            conn.close()
    except BaseException as exc:
        if pool is not None:  # the connection the pool let this observation open is gone
            pool.dropped(server_key(node))
        if not isinstance(exc, Exception):
            raise
        _failed(node, obs, exc)
    answered = machine.result()
    if not answered and obs.reachable:
        # the server answers, so its machine is up: a connection still being opened
        # (a loaded machine, a slow link) is worth waiting for, to its own timeout
        answered = host.reachable(observe_time_left(HOST_CONNECT_WAIT_S))
    return _with_machine(host, node, obs, answered)


def _with_machine(host: Host, node: PgNode, obs: PgObservation, answered: bool) -> PgObservation:
    """Add what the node's machine says (its files) when it answered."""
    if not answered:
        obs.host_reachable = False
        if not obs.reachable:
            obs.error = f"{obs.error}; its machine {host.name} does not answer either"
        return obs
    try:
        _observe_files(host, node, obs)
    except HostUnreachable:  # lost between the question and the reads: what SQL saw stands
        obs.host_reachable = False
        obs.pgdata_ok, obs.postmaster_pid, obs.postmaster_alive = False, None, False
        obs.pgdata_matches = None
    return obs


def _failed(node: PgNode, obs: PgObservation, exc: Exception) -> None:
    """What an observation that could not query the node says."""
    if isinstance(exc, PgError):
        obs.error = exc.message
        obs.role = "unknown" if isinstance(exc, PgAuthFailed | PgWrongDatabase) else "down"
        return
    # a query failed mid-way (the server went away): reported, not raised
    obs.error = f"{node.site}: observation failed: {str(exc).strip().splitlines()[0]}"
    obs.role = "down"
    obs.reachable = False


def server_key(node: PgNode) -> tuple[Any, ...]:
    """What a kept connection is kept for: one server, as one user, in one database."""
    return (node.host, node.port, node.user, node.password, node.dbname)


def _observe_kept(pool: Kept, node: PgNode, timeout: float | None) -> PgObservation | None:
    """The node observed on a kept connection, or None: there was none (after waiting
    for one while the pool's bound is reached, ``Kept.take``), or it broke at once (the
    server restarted, or closed it): the caller observes on a fresh connection, exactly as
    without a pool, so a restarted server is seen as a new client sees it.

    What the server cannot change while the connection is open (``_Fixed``) was read
    when it was opened; what it can change is queried each time. The kept connection
    gets the time a fresh one would have had to connect (the
    connect timeout): a server that does not answer in that time (stopped, its link
    cut) is observed down, as a fresh connection timing out would have seen it, and
    the connection is dropped (``Kept.within`` ends the wait; TCP alone
    would wait minutes on a partitioned link).
    """
    key = server_key(node)
    wait = timeout if timeout is not None else node.connect_timeout
    taken = pool.take(key, wait=observe_time_left(wait))
    if taken is None:
        return None  # the caller opens one (the pool counts it)
    conn, fixed = taken
    obs = PgObservation(site=node.site, address=node.address, observed_at=time.time())
    started = time.monotonic()
    try:
        with pool.within(conn.pgconn.socket, wait):
            _observe_sql(conn, obs, fixed)
    except Exception as exc:
        with contextlib.suppress(Exception):
            conn.close()
        if time.monotonic() - started < wait:
            # broke at once: a fresh connection (in this one's place in the pool) says
            # what the server is now
            return None
        pool.dropped(key)
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        obs = PgObservation(site=node.site, address=node.address, observed_at=obs.observed_at)
        obs.error = (
            f"{node.site}: PostgreSQL at {node.address} is unreachable (no answer within"
            f" {wait:g}s on the monitor's open connection: {cause})"
        )
        return obs
    obs.reachable = True
    pool.give(key, (conn, fixed), conn.close)
    return obs


def _observe_files(host: Host, node: PgNode, obs: PgObservation) -> None:
    """The node's files. postmaster.pid is read once per observation (it was read three
    times), and paths are resolved only when they differ as written (the same path has
    the same real path; each ``realpath`` is a system call per component): every
    monitor probe of a server of its own does this every second, and over SSH each
    read is a round trip."""
    obs.pgdata_ok = pgdata_ok(host, node)
    text = postmaster_pid_text(host, node) if obs.pgdata_ok else None
    pid_info = postmaster_pid_file(host, node, text=text) if text is not None else None
    if pid_info is not None:
        obs.postmaster_pid = pid_info[0]
        obs.postmaster_alive = running_postmaster(host, node, text=text) is not None
    if obs.read_only:
        obs.self_fenced = host.exists(os.path.join(node.pgdata, SELF_FENCE_MARK))
    if obs.reachable and obs.data_directory:
        obs.pgdata_matches = obs.data_directory == node.pgdata or host.realpath(
            obs.data_directory
        ) == host.realpath(node.pgdata)
    if not obs.reachable and obs.pgdata_ok and not obs.postmaster_alive:
        _observe_stopped(host, node, obs)


def _data_directory(conn: Any) -> str | None:
    """The server's own data directory, to catch a topology whose pgdata points elsewhere.

    Needs superuser or pg_read_all_settings; without them we cannot tell (None).
    """
    import psycopg  # loaded by the connection already: a lookup in sys.modules

    try:
        with conn.transaction():
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    except psycopg.Error:
        return None
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class _Fixed:
    """What a server cannot change while a connection to it stays open: each of these
    takes a new postmaster (initdb, a restart), which ends every connection. Read once
    per kept connection (``_observe_kept``), not once per observation."""

    system_identifier: int
    data_checksums: bool
    rewind_possible: bool
    server_version: str
    data_directory: str | None


def _observe_sql(conn: Any, obs: PgObservation, fixed: _Fixed | None = None) -> _Fixed:
    """Query the node; ``fixed``: what this connection already read of the server's fixed
    facts (then only what can change is asked). Returns the fixed facts."""
    if fixed is None:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),"
            " current_setting('default_transaction_read_only'),"
            " (SELECT system_identifier FROM pg_control_system()),"
            " current_setting('data_checksums'), current_setting('wal_log_hints'),"
            " current_setting('server_version')"
        ).fetchone()
        in_recovery, sync_names, read_only, sysid, checksums, hints, version = row
        fixed = _Fixed(
            system_identifier=int(sysid),
            data_checksums=checksums == "on",
            rewind_possible=checksums == "on" or hints == "on",
            server_version=version,
            data_directory=_data_directory(conn),
        )
    else:
        in_recovery, sync_names, read_only = conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),"
            " current_setting('default_transaction_read_only')"
        ).fetchone()
    obs.synchronous_standby_names = str(sync_names)
    obs.read_only = read_only == "on"
    obs.data_directory = fixed.data_directory
    obs.system_identifier = fixed.system_identifier
    obs.data_checksums = fixed.data_checksums
    obs.rewind_possible = fixed.rewind_possible
    obs.server_version = fixed.server_version
    if not in_recovery:
        obs.role = "primary"
        lsn, walfile = conn.execute(current_timeline_sql()).fetchone()
        obs.current_lsn = to_lsn(lsn)
        obs.replay_lsn = obs.current_lsn
        obs.timeline = int(walfile[:8], 16)
        obs.lag_bytes = 0
        obs.lag_seconds = 0.0
        obs.replicas = [
            ReplicaInfo(
                application_name=r[0],
                client_addr=None if r[1] is None else str(r[1]),
                state=r[2],
                sync_state=r[3],
                sent_lsn=to_lsn(r[4]),
                write_lsn=to_lsn(r[5]),
                flush_lsn=to_lsn(r[6]),
                replay_lsn=to_lsn(r[7]),
            )
            for r in conn.execute(
                "SELECT application_name, client_addr, state, sync_state, sent_lsn,"
                " write_lsn, flush_lsn, replay_lsn FROM pg_stat_replication ORDER BY 1"
            ).fetchall()
        ]
        return fixed
    obs.role = "standby"
    receive, replay, lag_s, ckpt_tli = conn.execute(
        "SELECT pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
        " CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()"
        "   THEN 0"
        "   ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END,"
        " (SELECT timeline_id FROM pg_control_checkpoint())"
    ).fetchone()
    obs.replay_lsn = to_lsn(replay)
    obs.current_lsn = to_lsn(receive) if receive is not None else obs.replay_lsn
    obs.lag_seconds = None if lag_s is None else max(0.0, float(lag_s))
    obs.timeline = int(ckpt_tli)
    wal = conn.execute(
        "SELECT status, received_tli, latest_end_lsn, sender_host, sender_port"
        " FROM pg_stat_wal_receiver"
    ).fetchone()
    upstream_end = None
    if wal is not None:
        status, received_tli, latest_end, sender_host, sender_port = wal
        obs.streaming = status == "streaming"
        if sender_host:
            obs.upstream = f"{sender_host}:{sender_port}"
        if received_tli:
            obs.timeline = max(int(received_tli), obs.timeline)
        upstream_end = to_lsn(latest_end)
    if obs.replay_lsn is not None:
        ahead = max(x for x in (obs.current_lsn, upstream_end, obs.replay_lsn) if x is not None)
        obs.lag_bytes = ahead - obs.replay_lsn
    return fixed


def _observe_stopped(host: Host, node: PgNode, obs: PgObservation) -> None:
    try:
        cd = controldata(host, node)
    except PgError as exc:
        obs.error = f"{obs.error}; {exc.message}" if obs.error else exc.message
        return
    obs.cluster_state = cd.get("Database cluster state")
    obs.system_identifier = int(cd["Database system identifier"])
    obs.timeline = int(cd["Latest checkpoint's TimeLineID"])
    obs.current_lsn = parse_lsn(cd["Latest checkpoint location"])
    obs.rewind_possible = rewind_possible_from_controldata(cd)
    obs.data_checksums = cd.get("Data page checksum version", "0") != "0"


def classify(observations: Iterable[PgObservation], active_site: str | None) -> dict[str, str]:
    """Label each site: a primary that is not the active site is a "stale-primary".

    Pure: the same observations give the same labels. With no active site (unknown),
    primaries are labelled "primary" and the planner must choose.
    """
    labels: dict[str, str] = {}
    for obs in observations:
        label = obs.role
        if label == "primary" and active_site is not None and obs.site != active_site:
            label = "stale-primary"
        labels[obs.site] = label
    return labels


def ensure_same_cluster(observations: Iterable[PgObservation] | Mapping[str, int]) -> int | None:
    """Raise PgWrongCluster when nodes report different system identifiers.

    Accepts observations or a {site: system_identifier} mapping; nodes whose
    identifier is unknown (down, no data) are skipped. Returns the common identifier.
    """
    if isinstance(observations, Mapping):
        ids = {site: int(sysid) for site, sysid in observations.items() if sysid is not None}
    else:
        ids = {o.site: o.system_identifier for o in observations if o.system_identifier}
    seen: dict[int, str] = {}
    for site, sysid in ids.items():
        seen.setdefault(sysid, site)
    if len(seen) > 1:
        (id_a, site_a), (id_b, site_b) = list(seen.items())[:2]
        raise PgWrongCluster(
            f"{site_a} and {site_b} are different PostgreSQL clusters "
            f"(system identifier {id_a} on {site_a}, {id_b} on {site_b})",
            hint="one of them is not a copy of the other: check host/port/pgdata in the "
            "topology; a node of another cluster is never resynced over automatically",
        )
    return next(iter(seen), None)
