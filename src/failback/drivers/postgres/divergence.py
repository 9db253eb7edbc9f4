"""Has a returning node diverged from the source it should follow? (pg_rewind's question)

A node needs a rewind when it wrote WAL that the source does not have: its
timeline is an ancestor of the source's and its WAL goes past the point where the
source forked from that timeline (the switchpoint in the source's timeline
history), or it sits on a timeline the source never had. The decision follows
pg_rewind and Patroni's ``rewind.py``:

* the node's end of WAL is the *end* of its shutdown checkpoint record for a
  cleanly stopped primary (a clean switchover forks the new timeline exactly
  there, so no rewind), the minimum recovery point for a standby stopped in
  recovery, the end of the WAL found after its last checkpoint for a crashed node,
  and the replay position of a running standby;
* two primaries on the same timeline is a split brain that pg_rewind cannot even
  see ("no rewind required"): the caller must re-clone.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError, PgNotReady, PgStateError, PgUnreachable
from failback.drivers.postgres.lsn import format_lsn, parse_lsn, to_lsn
from failback.drivers.postgres.node import PgNode
from failback.drivers.postgres.node_facts import ensure_same_cluster
from failback.drivers.postgres.process import (
    controldata,
    pgdata_ok,
    run_pg,
    running_postmaster,
)
from failback.hosts.base import Host

_END_PATTERNS = (
    re.compile(r"invalid record length at ([0-9A-F]+/[0-9A-F]+)", re.I),
    re.compile(r"record with incorrect prev-link [0-9A-F/]+ at ([0-9A-F]+/[0-9A-F]+)", re.I),
    re.compile(r"invalid magic number \w+ in log segment \S+, LSN ([0-9A-F]+/[0-9A-F]+)", re.I),
    re.compile(r"invalid resource manager ID \d+ at ([0-9A-F]+/[0-9A-F]+)", re.I),
    re.compile(r"contrecord is requested by ([0-9A-F]+/[0-9A-F]+)", re.I),
)
_RECORD_LSN = re.compile(r"lsn: ([0-9A-F]+/[0-9A-F]+), prev", re.I)


@dataclass
class Divergence:
    """The answer of ``check_divergence``; ``reason`` is written for a person."""

    needs_rewind: bool
    reason: str
    same_system: bool
    node_system_identifier: int | None = None
    source_system_identifier: int | None = None
    node_state: str = "unknown"
    node_timeline: int | None = None
    node_end_lsn: int | None = None
    source_timeline: int | None = None
    source_lsn: int | None = None
    fork_lsn: int | None = None
    split_brain: bool = False
    source_history: list[tuple[int, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("node_end_lsn", "source_lsn", "fork_lsn"):
            data[key] = None if data[key] is None else format_lsn(data[key])
        for key in ("node_system_identifier", "source_system_identifier"):
            data[key] = None if data[key] is None else str(data[key])
        data["source_history"] = [[tli, format_lsn(lsn)] for tli, lsn in self.source_history]
        return data


def parse_history(text: str) -> list[tuple[int, int]]:
    """A timeline history file -> [(parent timeline, switchpoint LSN), ...] oldest first."""
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            entries.append((int(parts[0]), parse_lsn(parts[1])))
    return entries


def history_file_name(timeline: int) -> str:
    return f"{timeline:08X}.history"


def source_history(conn: Any, timeline: int) -> list[tuple[int, int]]:
    """The source's timeline history, read with pg_read_file (superuser or
    pg_read_server_files; the same file TIMELINE_HISTORY sends over replication)."""
    if timeline <= 1:
        return []
    row = conn.execute(
        "SELECT pg_read_file(%s)", ("pg_wal/" + history_file_name(timeline),)
    ).fetchone()
    return parse_history(row[0])


def wal_end(host: Host, node: PgNode, start_lsn: int, timeline: int) -> int | None:
    """End of the valid WAL in the node's pg_wal, reading forward from ``start_lsn``.

    pg_waldump stops with an error naming the first position that holds no valid
    record: that is where the node's WAL ends (Patroni reads it the same way).
    """
    result = run_pg(
        host,
        node,
        [
            node.bin("pg_waldump"),
            "-p",
            os.path.join(node.pgdata, "pg_wal"),
            "-t",
            str(timeline),
            "-s",
            format_lsn(start_lsn),
        ],
        timeout=120,
        check=False,
    )
    for pattern in _END_PATTERNS:
        match = pattern.search(result.stderr)
        if match:
            return parse_lsn(match.group(1))
    return None


def checkpoint_record_end(host: Host, node: PgNode, checkpoint: int, timeline: int) -> int:
    """End of the checkpoint record at ``checkpoint`` (a cleanly stopped primary's last
    record): what a standby's pg_last_wal_replay_lsn() shows once it replayed it, and
    the switchpoint of a timeline promoted right after it. Falls back to
    ``checkpoint + 1`` ("strictly past its start": records replay whole) when
    pg_waldump cannot tell."""
    end = wal_end(host, node, checkpoint, timeline)
    return end if end is not None and end > checkpoint else checkpoint + 1


def _highest_history(host: Host, node: PgNode) -> int:
    best = 1
    for name in host.list_dir(os.path.join(node.pgdata, "pg_wal")):
        if name.endswith(".history"):
            try:
                best = max(best, int(name[:8], 16))
            except ValueError:
                continue
    return best


@dataclass
class _NodeFacts:
    state: str  # primary | standby | stopped-primary | stopped-standby | crashed | crashed-standby
    system_identifier: int
    timeline: int
    end_lsn: int


CONNECT_TRIES = 3
"""Connections tried while the node's postmaster runs before its facts are given up on:
a server busy starting up, or a loaded machine dropping one SYN, is not a reason to roll
a failback back (seen once when a new leader resumed a resync its predecessor died in)."""


def _node_facts(host: Host, node: PgNode) -> _NodeFacts:
    conn = _connect_while_running(host, node) if running_postmaster(host, node) else None
    if conn is not None:
        with conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())"
            ).fetchone()
            in_recovery, sysid = row  # type: ignore[misc]
            if in_recovery:
                r = conn.execute(
                    "SELECT pg_last_wal_replay_lsn(),"
                    " (SELECT timeline_id FROM pg_control_checkpoint()),"
                    " (SELECT received_tli FROM pg_stat_wal_receiver)"
                ).fetchone()
                tli = max(int(r[1]), int(r[2] or 0))  # type: ignore[index]
                return _NodeFacts("standby", int(sysid), tli, to_lsn(r[0]) or 0)  # type: ignore[index]
            r = conn.execute(
                "SELECT lsn, pg_walfile_name(lsn) FROM pg_current_wal_lsn() AS lsn"
            ).fetchone()
            return _NodeFacts("primary", int(sysid), int(r[1][:8], 16), to_lsn(r[0]) or 0)  # type: ignore[index]
    if not pgdata_ok(host, node):
        raise PgStateError(f"{node.site}: no data directory at {node.pgdata}")
    cd = controldata(host, node)
    sysid = int(cd["Database system identifier"])
    state = cd.get("Database cluster state", "")
    ckpt = parse_lsn(cd["Latest checkpoint location"])
    ckpt_tli = int(cd["Latest checkpoint's TimeLineID"])
    min_rec = parse_lsn(cd.get("Minimum recovery ending location", "0/0"))
    min_rec_tli = int(cd.get("Min recovery ending loc's timeline", "0") or 0)
    if state == "shut down":
        return _NodeFacts(
            "stopped-primary", sysid, ckpt_tli, checkpoint_record_end(host, node, ckpt, ckpt_tli)
        )
    if state == "shut down in recovery":
        return _NodeFacts("stopped-standby", sysid, max(min_rec_tli, ckpt_tli), max(min_rec, ckpt))
    if state in ("in archive recovery",):
        return _NodeFacts("crashed-standby", sysid, max(min_rec_tli, ckpt_tli), max(min_rec, ckpt))
    # Crashed (or killed) while running as a primary: WAL may follow the last checkpoint,
    # possibly on a timeline it was promoted to after that checkpoint.
    tli = max(ckpt_tli, _highest_history(host, node))
    end = wal_end(host, node, ckpt, tli)
    if end is None and tli != ckpt_tli:
        end = wal_end(host, node, ckpt, ckpt_tli)
    return _NodeFacts("crashed", sysid, tli, max(end or ckpt, ckpt))


def _connect_while_running(host: Host, node: PgNode) -> Any:
    """``connect`` tried again, a moment later, while the postmaster still runs and the
    failure says only that it did not answer in time or is not ready yet. None: the
    postmaster stopped meanwhile (its control file then tells the facts)."""
    attempt = 1
    while True:
        try:
            return connect(node)
        except (PgUnreachable, PgNotReady):
            if running_postmaster(host, node) is None:
                return None
            if attempt >= CONNECT_TRIES:
                raise
            time.sleep(0.5 * attempt)
            attempt += 1


def check_divergence(host: Host, node: PgNode, source: PgNode) -> Divergence:
    """Does ``node`` need a rewind before it can stream from ``source``? (read-only)"""
    facts = _node_facts(host, node)
    with connect(source) as conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())"
        ).fetchone()
        src_recovery, src_sysid = row  # type: ignore[misc]
        if src_recovery:
            r = conn.execute(
                "SELECT pg_last_wal_replay_lsn(),"
                " greatest((SELECT timeline_id FROM pg_control_checkpoint()),"
                "          (SELECT received_tli FROM pg_stat_wal_receiver))"
            ).fetchone()
            src_lsn, src_tli = to_lsn(r[0]) or 0, int(r[1])  # type: ignore[index]
        else:
            r = conn.execute(
                "SELECT lsn, pg_walfile_name(lsn) FROM pg_current_wal_lsn() AS lsn"
            ).fetchone()
            src_lsn, src_tli = to_lsn(r[0]) or 0, int(r[1][:8], 16)  # type: ignore[index]
        history = source_history(conn, src_tli) if int(src_sysid) == facts.system_identifier else []
    result = Divergence(
        needs_rewind=False,
        reason="",
        same_system=int(src_sysid) == facts.system_identifier,
        node_system_identifier=facts.system_identifier,
        source_system_identifier=int(src_sysid),
        node_state=facts.state,
        node_timeline=facts.timeline,
        node_end_lsn=facts.end_lsn,
        source_timeline=src_tli,
        source_lsn=src_lsn,
        source_history=history,
    )
    if not result.same_system:
        result.reason = (
            f"{node.site} belongs to another cluster (system identifier "
            f"{facts.system_identifier}, {source.site} has {src_sysid})"
        )
        return result
    end = format_lsn(facts.end_lsn)
    was_primary = facts.state in ("primary", "stopped-primary", "crashed")
    if facts.timeline == src_tli:
        if was_primary and not src_recovery:
            result.needs_rewind = True
            result.split_brain = True
            result.reason = (
                f"{node.site} and {source.site} were both primaries on timeline {src_tli}: "
                "split brain, their histories cannot be compared (pg_rewind would see "
                "nothing to do); re-clone"
            )
        elif facts.end_lsn > src_lsn and not src_recovery:
            result.needs_rewind = True
            result.reason = (
                f"{node.site} is ahead of {source.site} on the same timeline {src_tli} "
                f"({end} > {format_lsn(src_lsn)})"
            )
        else:
            result.reason = (
                f"{node.site} is on the source's timeline {src_tli} at {end}: it can stream"
            )
        return result
    forks = {tli: lsn for tli, lsn in history}
    if facts.timeline in forks:
        fork = forks[facts.timeline]
        result.fork_lsn = fork
        if facts.end_lsn > fork:
            result.needs_rewind = True
            result.reason = (
                f"{node.site} wrote WAL on timeline {facts.timeline} up to {end}, past the "
                f"point {format_lsn(fork)} where {source.site} forked timeline "
                f"{_child(history, facts.timeline, src_tli)} from it"
            )
        else:
            result.reason = (
                f"{node.site} stopped at {end} on timeline {facts.timeline}, not past "
                f"{source.site}'s fork point {format_lsn(fork)}: it can follow timeline "
                f"{src_tli}"
            )
        return result
    result.needs_rewind = True
    result.reason = (
        f"{node.site} is on timeline {facts.timeline}, which is not in the history of "
        f"{source.site}'s timeline {src_tli}"
    )
    return result


def _child(history: list[tuple[int, int]], timeline: int, current: int) -> int:
    tlis = [tli for tli, _ in history] + [current]
    index = tlis.index(timeline)
    return tlis[index + 1]


def require_same_system(div: Divergence, node: PgNode, source: PgNode) -> None:
    """Raise PgWrongCluster when the divergence check found two different clusters."""
    if not div.same_system:
        ensure_same_cluster(
            {node.site: div.node_system_identifier, source.site: div.source_system_identifier}
        )
        raise PgError(div.reason)  # pragma: no cover - ensure_same_cluster raised already


__all__ = [
    "Divergence",
    "check_divergence",
    "checkpoint_record_end",
    "parse_history",
    "require_same_system",
    "wal_end",
]
