"""Plan steps performed on PostgreSQL: preflight, fence, stop, wait, promote, resync, verify.

Every step is idempotent: ``check`` looks at the real server (is it stopped? is it
primary? does it stream from the right upstream?) so a resumed run never repeats an
effect and never skips one that did not happen.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from failback.drivers.base import Action, StepContext
from failback.drivers.postgres.capture import (
    Capture,
    capture_diverged,
    socket_dir,
    stop_isolated,
)
from failback.drivers.postgres.capture_slots import keep_capture_slots
from failback.drivers.postgres.conn import connect
from failback.drivers.postgres.errors import PgError
from failback.drivers.postgres.lsn import format_lsn, parse_lsn
from failback.drivers.postgres.node import PgNode, node_from_component
from failback.drivers.postgres.node_facts import PgObservation, ensure_same_cluster, observe
from failback.drivers.postgres.process import (
    checkpoint,
    kill_postmaster,
    promote,
    promoted_or_requested,
    running_postmaster,
    start,
    stop,
    wait_pid_gone,
)
from failback.drivers.postgres.replication import (
    final_position,
    wait_for_catchup,
    wait_for_replay,
    wait_streaming,
)
from failback.drivers.postgres.resync import resync
from failback.errors import FailbackError, StepFailed
from failback.hosts import HostUnreachable
from failback.model.plan import StepSpec

PROBE_TABLE = "failback_write_probe"
CAPTURE_CREATE_MS = 3000
"""How long a run's verify step may wait for transactions in progress to create a capture
slot (the monitor tries again every second)."""


class PgAction(Action):
    """Base: resolves the component's node at the step's site (and other sites on demand)."""

    def __init__(self, spec: StepSpec, ctx: StepContext) -> None:
        super().__init__(spec, ctx)
        if spec.component is None or spec.site is None:
            raise FailbackError(f"step {spec.id}: a postgres step needs a component and a site")
        self.component = ctx.service.components[spec.component]
        self.node = self.node_at(spec.site)

    def node_at(self, site: str) -> PgNode:
        return node_from_component(self.component, site, self.host(site))

    @property
    def options(self) -> Any:
        return self.component.options

    def observe(self, node: PgNode | None = None) -> PgObservation:
        node = node or self.node
        return observe(self.host(node.site), node)

    def on_progress(self, current: int, target: int) -> None:
        """Progress of a wait on LSNs (replay towards a target, standby towards primary)."""
        behind = max(0, int(target) - int(current))
        self.ctx.progress(
            f"{format_lsn(int(current))} of {format_lsn(int(target))}, {behind} bytes behind"
        )


def _raise_unusable(obs: PgObservation, what: str) -> None:
    raise StepFailed(
        f"{obs.site} ({obs.address}) {what}: {obs.error or obs.role}",
        hint="check host/port/pgdata and credentials of that site in the topology file",
    )


def _is_primary(node: PgNode) -> bool:
    """One cheap query (this runs inside the write-unavailability window)."""
    try:
        with connect(node, timeout=2) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
    except PgError:
        return False
    return bool(row) and not row[0]


def _accepts_connections(node: PgNode) -> bool:
    try:
        with connect(node, timeout=2) as conn:
            conn.execute("SELECT 1")
    except PgError:
        return False
    return True


def _server_answers_within(node: PgNode, seconds: float) -> bool:
    """Does anything answer at the server's address within ``seconds``?

    A completed TCP handshake is enough: the machine is up and something listens there,
    so the server cannot be taken for gone — even one too slow to finish a TLS and SCRAM
    login in time (a WAN, an overloaded primary) is a server that may take writes. A
    refused connection (nothing listens) or no answer at all (a dead or cut-off
    machine) is not an answer. Asked beside the machine's own question, so the two
    cost one wait."""
    try:
        with socket.create_connection((node.host, node.port), timeout=seconds):
            return True
    except OSError:
        return False


def _settle(
    action: PgAction, serving: Callable[[PgNode], bool], what: str, timeout: float = 120.0
) -> bool:
    """For an undo that starts a server again: wait until its postmaster is gone (False:
    start it) or serves (True: a run interrupted in this undo started it already).
    One that runs without serving is shutting down (a stop in progress) or starting."""
    deadline = time.monotonic() + timeout
    while (pid := running_postmaster(action.host(), action.node)) is not None:
        if serving(action.node):
            return True
        if time.monotonic() >= deadline:
            raise StepFailed(
                f"{action.spec.site}: postmaster {pid} neither stopped nor came {what} "
                f"within {timeout:g}s",
                hint=f"see the server log of {action.spec.site}",
            )
        time.sleep(0.05)
    return False


class PgPreflight(PgAction):
    """Refuse before any action when a site is not what the topology says.

    Wrong credentials, a data directory that is not where the config says, or two
    sites that are not the same cluster (different system identifiers) stop the run
    here, before anything changed.
    """

    name = "postgres.preflight"

    def apply(self) -> dict[str, Any] | None:
        expect = self.spec.params.get("expect", "primary")
        target = self.observe()
        if not target.pgdata_ok and target.postmaster_pid is None and not target.reachable:
            raise StepFailed(
                f"{self.spec.site}: no PostgreSQL data directory at {self.node.pgdata}",
                hint="fix pgdata of that site in the topology file",
            )
        if not target.reachable:
            _raise_unusable(target, "is not usable")
        if expect != "any" and target.role != expect:
            raise StepFailed(
                f"{self.spec.site} is {target.role}, expected {expect}",
                hint="`failback status` shows every site's role",
            )
        observed = [target]
        for site in self.spec.params.get("compare", []):
            other = self.observe(self.node_at(site))
            if other.error and "password" in other.error:
                _raise_unusable(other, "refuses our credentials")
            observed.append(other)
        for seen in observed:
            if seen.pgdata_matches is False:
                raise StepFailed(
                    f"{seen.site}: the server at {seen.address} runs from "
                    f"{seen.data_directory}, not from the pgdata the topology names",
                    hint="fix pgdata of that site in the topology file",
                )
        ensure_same_cluster(observed)
        return {site.site: site.to_dict() for site in observed}


SERVER_ANSWER_S = 0.5
"""How long the database fence gives the server's address to accept a TCP connection
before taking it for gone with its machine: one round trip on a live network (a
handshake, not a login). Asked beside the machine's question (``ANSWER_WITHIN_S``),
so the two cost one wait, inside the clients' outage, and only once the site is
fenced where clients enter."""

ANSWER_WITHIN_S = 0.5
"""How long the database fence waits for a machine that does not answer, once its site
is fenced where clients enter: the run connected to every machine before its first
step, so a live machine answers in milliseconds; a dead one is not waited for."""


class PgFence(PgAction):
    """Make sure the site's database takes no writes: stop it when it runs.

    The router fence comes first; this makes the fence hold even for a client that
    reaches the database directly. A fast stop that does not finish in time falls
    back to SIGKILL: a half-stopped old primary is worse than a crashed one.
    """

    name = "postgres.fence"
    has_undo = True
    _gone: bool | None = None

    def check(self) -> bool:
        if self._gone_while_fenced_elsewhere():
            return False  # apply records the fence at the entry points
        try:
            return running_postmaster(self.host(), self.node) is None
        except HostUnreachable:
            return False  # apply decides whether the entry points' fence is enough

    def apply(self) -> dict[str, Any] | None:
        if self._gone_while_fenced_elsewhere():
            return self._unreachable(
                HostUnreachable(
                    self.host().name,
                    "no-answer",
                    f"no answer within {self._answer_within():g}s",
                    None,
                )
            )
        try:
            return self._stop_if_running()
        except HostUnreachable as exc:  # the machine went away during the stop
            return self._unreachable(exc)

    def _stop_if_running(self) -> dict[str, Any]:
        pid = running_postmaster(self.host(), self.node)
        if pid is None:
            return {"was_running": False}
        self.ctx.remember(f"was_running.{self.spec.site}", True)
        try:
            stop(
                self.host(),
                self.node,
                mode="fast",
                timeout=float(self.spec.params.get("timeout_s", 10)),
            )
            return {"was_running": True, "stopped": "fast"}
        except PgError as exc:
            self.ctx.log(f"fast stop of {self.spec.site} failed ({exc.message}); killing it")
            kill_postmaster(self.host(), self.node)
            wait_pid_gone(self.host(), pid, timeout=30)
            return {"was_running": True, "stopped": "SIGKILL"}

    def _fenced_elsewhere(self) -> bool:
        """This run already stopped client writes to the site where they enter (every
        router and pool fence of the site verified, applied or found in place) or ran a
        declared site fence (a power-off proven by its check): the database itself need
        not answer for the promotion to be safe — as long as it does not answer at all."""
        site = self.spec.site or ""
        return bool(
            self.ctx.values.get(f"entry_fenced.{site}")
            or self.ctx.values.get(f"writes_stopped_at.{site}")
            or self.ctx.values.get(f"site_fenced.{site}")
        )

    def _answer_within(self) -> float:
        return float(self.spec.params.get("answer_within_s", ANSWER_WITHIN_S))

    def _gone_while_fenced_elsewhere(self) -> bool:
        """Fenced elsewhere, and neither the machine (SSH, ``answer_within_s``) nor the
        server's address (TCP, ``SERVER_ANSWER_S``) answers: the promotion must not wait
        out an SSH connect timeout for a dead or cut-off machine. A server that still
        answers is not gone, whatever its sshd does: then the stop goes through the
        machine, however long it takes, or the step fails. Asked once per attempt."""
        if not self._fenced_elsewhere():
            return False
        if self._gone is None:
            self._gone = not self._anything_answers()
        return self._gone

    def _anything_answers(self) -> bool:
        """The machine over SSH and the server's address over TCP, side by side."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            machine = pool.submit(self.host().reachable, self._answer_within())
            server = _server_answers_within(self.node, SERVER_ANSWER_S)
            return machine.result() or server

    def _unreachable(self, exc: HostUnreachable) -> dict[str, Any]:
        """The site's machine cannot be reached: its database may still run (a partition)
        or be gone with it. That is enough only when this run already fenced it where
        clients enter (router, pool) or by a site fence, and its server's address does
        not answer either: then no client write reaches it, and the promotion must not wait for
        a machine that does not answer. Otherwise nothing fences it."""
        site = self.spec.site or ""
        if not self._fenced_elsewhere():
            raise StepFailed(
                f"cannot fence {site}'s database: {exc.message}; and no router, pool or "
                "site fence of this service fenced it",
                hint=f"make {site}'s machine reachable, or power it off and declare a site "
                "fence (a command component's fence with fences_site: true), then resume",
            )
        if not self._gone and _server_answers_within(self.node, SERVER_ANSWER_S):
            raise StepFailed(
                f"cannot fence {site}'s database: its machine does not answer over SSH "
                f"({exc.message}) but its PostgreSQL at {self.node.address} still answers: "
                "it could take writes from a client that bypasses the routers",
                hint=f"restore SSH to {site} (`failback hosts check`), or stop that "
                "PostgreSQL yourself, then `failback resume`",
            )
        self.ctx.remember(f"unreachable.{site}", True)
        self.ctx.event(
            "fence.unreachable",
            f"{site}'s machine cannot be reached ({exc.message}) and its database does not "
            "answer: fenced at the entry points only; if it still runs it is a stale "
            "primary, fenced on sight when it returns",
            data={"site": site},
        )
        return {"was_running": "unknown", "unreachable": exc.message}

    def verify(self) -> None:
        if self.ctx.values.get(f"unreachable.{self.spec.site}"):
            return  # fenced at the entry points (see _unreachable)
        try:
            running = running_postmaster(self.host(), self.node)
        except HostUnreachable as exc:  # gone between the stop and this look
            self._unreachable(exc)
            return
        if running is not None:
            raise StepFailed(f"{self.spec.site}: postmaster still runs after the fence")

    def undo(self) -> dict[str, Any] | None:
        """Start it again if this step stopped it (a rollback before any promotion), once
        a stop it asked for has finished: one still shutting down would stay stopped."""
        if not self.ctx.values.get(f"was_running.{self.spec.site}") or _settle(
            self, _accepts_connections, "up"
        ):
            return {"started": None}
        start(self.host(), self.node, timeout=120)
        return {"started": self.spec.site}


class PgStopPrimary(PgAction):
    """Cleanly stop the current primary and remember its final WAL position.

    A clean fast shutdown ships the last WAL to the streaming standby; the final
    position read from pg_control is what the standby must replay, exactly, before
    it may be promoted (promise 2). Undo starts it again as the primary it was.
    """

    name = "postgres.stop"
    has_undo = True

    def _key(self) -> str:
        # per site: a switch back in the same run stops the other site, and must never
        # reuse this position
        return f"final_lsn.{self.spec.site}"

    def check(self) -> bool:
        return running_postmaster(self.host(), self.node) is None and self._key() in self.ctx.values

    def apply(self) -> dict[str, Any] | None:
        if running_postmaster(self.host(), self.node) is not None:
            self.ctx.remember(f"was_running.{self.spec.site}", True)
            stop(
                self.host(),
                self.node,
                mode="fast",
                timeout=float(self.options.switchover_timeout),
            )
        final = final_position(self.host(), self.node)
        self.ctx.remember(self._key(), format_lsn(final))
        return {"final_lsn": format_lsn(final)}

    def undo(self) -> dict[str, Any] | None:
        """Start it again as the primary it was, once a stop in progress has finished.

        A postmaster that runs is either still shutting down (a fast stop that timed
        out: routing writes back to it now would send them to a server about to
        disappear) or was started by this undo before an interruption (then the undo
        is done once it serves as the primary): wait for whichever it is.
        """
        if not self.ctx.values.get(f"was_running.{self.spec.site}"):
            return {"started": None}
        if _settle(self, _is_primary, "a primary"):
            return {"started": None, "running": self.spec.site}
        start(self.host(), self.node, timeout=120)
        return {"started": self.spec.site}


class PgCheckpoint(PgAction):
    """CHECKPOINT on the primary just before its writes stop.

    The clean stop inside the write-unavailability window writes a shutdown
    checkpoint that must flush every dirty buffer; flushing them now, while clients
    still write, leaves it little to do (measured here: from ~290 ms to ~50 ms after a
    resync had dirtied many buffers).

    With ``params.standby`` (the site about to be promoted) it first waits until that
    standby's WAL receiver streams from this primary: the clean stop ships the last WAL
    only to a standby connected at that moment. One that was reconnecting then (seen
    after a partition healed) missed the end, and the replay step waited 30 s for WAL
    nobody could send, then rolled the run back. Waiting here, before writes stop, costs
    the clients nothing.
    """

    name = "postgres.checkpoint"

    def apply(self) -> dict[str, Any] | None:
        standby = self.spec.params.get("standby")
        if standby:
            wait_streaming(self.node_at(str(standby)), upstream=self.node, timeout=STREAMING_WAIT_S)
        started = time.monotonic()
        checkpoint(self.node)
        return {"checkpoint_s": round(time.monotonic() - started, 4)}


STREAMING_WAIT_S = 30.0
"""How long the checkpoint step waits for the standby to stream before the switch (a WAL
receiver retries every wal_retrieve_retry_interval, 5 s by default)."""


class PgWaitReplay(PgAction):
    """Wait until the standby replayed the old primary's exact final position."""

    name = "postgres.wait_replay"

    def _target(self) -> str | None:
        return self.ctx.values.get(f"final_lsn.{self.spec.params['source']}")

    def apply(self) -> dict[str, Any] | None:
        target = self._target()
        if target is None:
            raise StepFailed("no final position recorded by the stop step")
        replayed = wait_for_replay(
            self.node, target, timeout=float(self.options.switchover_timeout),
            on_progress=self.on_progress,
        )  # fmt: skip
        return {"final_lsn": target, "replayed": format_lsn(replayed)}

    def verify(self) -> None:
        recorded = self._target()
        if recorded is None:
            raise StepFailed("no final position recorded by the stop step")
        target = parse_lsn(recorded)
        with connect(self.node, timeout=2) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"
            ).fetchone()
        in_recovery, replayed = (bool(row[0]), row[1]) if row else (True, None)
        if in_recovery and (replayed is None or parse_lsn(replayed) < target):
            raise StepFailed(
                f"{self.spec.site} replayed only {replayed}, final position is {format_lsn(target)}"
            )


class PgPromote(PgAction):
    """Promote the site's standby (point of no return) after measuring what it lacks."""

    name = "postgres.promote"

    def check(self) -> bool:
        """Promoted; or a promotion asked for by an interrupted apply (its runner died
        inside ``promote``) completes within the switchover timeout: that one request is
        the step's effect, and asking again would apply the point of no return twice."""
        return promoted_or_requested(self.node, timeout=float(self.options.switchover_timeout))

    def apply(self) -> dict[str, Any] | None:
        if self.spec.params.get("measure_loss"):
            seen = self.observe()
            if not seen.reachable:
                _raise_unusable(seen, "cannot be promoted")
            self._measure_possible_loss(seen)
        started = time.monotonic()
        timeline = promote(self.node, timeout=float(self.options.switchover_timeout))
        self.ctx.measure("promote_s", time.monotonic() - started, "s")
        self.ctx.remember("new_timeline", timeline)
        if self.spec.params.get("relax_sync"):
            self._relax_synchronous_commit()
        return {"timeline": timeline}

    def _relax_synchronous_commit(self) -> None:
        """After an unplanned failover the new primary has no standby: a synchronous_standby
        _names it inherited would make every commit wait for ever. Unless the service is
        ``strict`` (writes must wait for a standby), relax to asynchronous, say so, and
        leave the monitor to restore zero-loss mode once a standby streams again."""
        if getattr(self.ctx.service.policy, "strict", False):
            return
        with connect(self.node, timeout=2) as conn:
            row = conn.execute("SHOW synchronous_standby_names").fetchone()
            if not row or not str(row[0]).strip():
                return
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")
        self.ctx.log(
            f"{self.spec.site} had synchronous_standby_names = {row[0]!r} and no standby left: "
            "relaxed to asynchronous commits (not strict)",
        )
        self.ctx.event(
            "sync.relaxed", f"{self.spec.site}: synchronous commit relaxed after failover"
        )

    def _measure_possible_loss(self, seen: PgObservation) -> None:
        """How far the old primary was last seen ahead of what this standby received."""
        received = seen.current_lsn
        last = self.ctx.service_facts().get("last_primary")
        if received is not None:
            self.ctx.measure("standby_received_lsn", received, "lsn")
        if not last or received is None or last.get("site") == self.spec.site:
            # never seen, or the position recorded is this site's own (from a time it was
            # the primary): nothing says how far the old primary was ahead
            self.ctx.measure(
                "possible_loss_bytes",
                None,
                "bytes",
                note="old primary's position was not recorded (is `failback monitor` "
                "running?): unknown",
            )
            return
        ahead = max(0, parse_lsn(last["lsn"]) - received)
        age = max(0.0, time.time() - float(last["at"]))
        self.ctx.remember("old_primary_last_seen_at", last["at"])
        self.ctx.measure("possible_loss_seen_age_s", age, "s")
        note = (
            f"old primary {last['site']} last seen at {last['lsn']} ({age:.1f}s before this "
            f"promotion), standby had received {format_lsn(received)}"
        )
        if age > STALE_POSITION_S:
            note += "; a lower bound: the old primary may have written more since"
        self.ctx.measure("possible_loss_bytes", ahead, "bytes", note=note)

    def verify(self) -> None:
        if not _is_primary(self.node):
            raise StepFailed(f"{self.spec.site} is still in recovery after promotion")


STALE_POSITION_S = 30.0
"""A recorded primary position older than this (the monitor records it every second
while it watches) only bounds the possible loss from below."""


class PgResync(PgAction):
    """Make the site a streaming standby of ``params.source``: none, rewind or re-clone."""

    name = "postgres.resync"

    def check(self) -> bool:
        source = self.node_at(self.spec.params["source"])
        seen = self.observe()
        src = self.observe(source)
        return (
            seen.reachable and seen.role == "standby" and seen.streaming
            and src.role == "primary" and seen.timeline == src.timeline
        )  # fmt: skip

    def apply(self) -> dict[str, Any] | None:
        source = self.node_at(self.spec.params["source"])
        # a fresh primary's control file names the old timeline until its first
        # checkpoint; a rewind taken before it can leave a node that cannot start (note 3)
        checkpoint(source)
        self.ctx.progress(f"resyncing {self.spec.site} from {source.site}")
        result = resync(self.host(), self.node, source)
        self.ctx.measure(
            f"resync.{self.spec.site}.duration_s", result.duration_s, "s",
            note=f"{result.method}: {result.reason}",
        )  # fmt: skip
        self.ctx.remember(f"resync_method.{self.spec.site}", result.method)
        if result.method == "reclone":
            self.ctx.log(f"{self.spec.site} was re-cloned: {result.reason}")
        wait_streaming(self.node, upstream=source, timeout=60)
        return result.to_dict()

    def verify(self) -> None:
        seen = self.observe()
        if not (seen.reachable and seen.role == "standby"):
            raise StepFailed(f"{self.spec.site} is {seen.role} after resync, not a standby")
        wait_streaming(self.node, upstream=self.node_at(self.spec.params["source"]), timeout=60)
        self.ctx.mark_in_sync(self.spec.site or "")


class PgCatchup(PgAction):
    """Wait until the standby's lag behind ``params.source`` is under max_lag_bytes."""

    name = "postgres.catchup"

    def apply(self) -> dict[str, Any] | None:
        source = self.node_at(self.spec.params["source"])
        lag = wait_for_catchup(
            self.node, source, max_lag_bytes=int(self.options.max_lag_bytes),
            timeout=float(self.options.catchup_timeout), on_progress=self.on_progress,
        )  # fmt: skip
        self.ctx.measure(f"catchup.{self.spec.site}.lag_bytes", lag, "bytes")
        return {"lag_bytes": lag}


class PgVerifyWrite(PgAction):
    """Write a row through the router and find it on the site's database directly.

    Proves end to end that clients' writes land on the new primary. With
    ``measure_rto`` it records the RTO: from the run's start (and from the last time
    the old primary was seen) to this first verified write.
    """

    name = "postgres.verify_write"

    def apply(self) -> dict[str, Any] | None:
        endpoint = self.spec.params.get("endpoint")
        token = f"run{self.ctx.run_id}-{secrets.token_hex(4)}"
        via = self.node
        if endpoint:
            host, _, port = str(endpoint).rpartition(":")
            via = PgNode(
                **{
                    **self.node.__dict__,
                    "host": host,
                    "port": int(port),
                    "site": f"router({endpoint})",
                }
            )
        deadline = time.monotonic() + float(self.spec.params.get("timeout_s", 15))
        last_error = ""
        while True:
            try:
                with connect(via, timeout=2) as conn, conn.transaction():
                    # where writes land, not whether a synchronous standby has them: with
                    # strict synchronous mode and no standby left, a commit waits until
                    # one streams (forever, for this step, which then never ended)
                    conn.execute("SET LOCAL synchronous_commit = local")
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigserial PRIMARY KEY,"
                        " token text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
                    )
                    conn.execute(f"INSERT INTO {PROBE_TABLE} (token) VALUES (%s)", (token,))
                break
            except Exception as exc:  # any failure is retried until the deadline
                last_error = getattr(exc, "message", str(exc))
                if time.monotonic() > deadline:
                    raise StepFailed(
                        f"a write through {endpoint or self.node.address} failed: {last_error}",
                        hint="check the router's write target and the new primary",
                    ) from exc
                time.sleep(0.05)
        verified_at = time.time()
        with connect(self.node) as conn:
            row = conn.execute(
                f"SELECT count(*), pg_is_in_recovery() FROM {PROBE_TABLE} WHERE token = %s",
                (token,),
            ).fetchone()
        if not row or row[0] != 1 or row[1]:
            raise StepFailed(
                f"the write through {endpoint} did not land on {self.spec.site}'s primary",
                hint="the router may send writes to another site: `failback status`",
            )
        if self.spec.params.get("measure_rto"):
            self.ctx.measure(
                "rto_s",
                verified_at - self.ctx.run_started_at(),
                "s",
                note="from the start of the run to the first verified write",
            )
            last_seen = self.ctx.values.get("old_primary_last_seen_at")
            if last_seen:
                self.ctx.measure(
                    "rto_from_last_seen_s", verified_at - float(last_seen), "s",
                    note="from the last successful observation of the old primary",
                )  # fmt: skip
        return {"token": token, "via": endpoint or self.node.address, **self._keep_capture()}

    def _keep_capture(self) -> dict[str, Any]:
        """Writes land on the new primary: give it capture slots now, so that a failover
        away from it before a monitor runs can still be captured (best effort: a
        problem is reported, the switch is done)."""
        if not self.options.capture_diverged:
            return {}
        site = self.spec.site or ""
        standby = next((s for s in self.component.sites if s != site), site)
        try:
            kept = keep_capture_slots(self.node, standby, create_timeout_ms=CAPTURE_CREATE_MS)
        except PgError as exc:
            self.ctx.log(f"capture slots on {site} not kept: {exc.message}")
            return {"capture_slots": {"problem": exc.message}}
        if kept.problem:
            self.ctx.log(f"capture slots on {site} not kept: {kept.problem}")
        return {"capture_slots": kept.to_dict()}


class PgCaptureDiverged(PgAction):
    """Read what the site committed after the fork, before the resync erases it.

    Kept with the run (``failback diverged RUN_ID``). When it cannot be read exactly
    (no slot, data directory lost, machine unreachable, capture turned off), the run
    stops here and asks a person, unless it was started with ``--accept-data-loss``.
    """

    name = "postgres.capture_diverged"
    has_undo = True

    def apply(self) -> dict[str, Any] | None:
        source = self.node_at(self.spec.params["source"])
        site = self.spec.site or ""
        self.ctx.progress(f"reading what {site} committed after the fork")
        try:
            host = self.host()
        except HostUnreachable as exc:
            capture = Capture(site=site, captured=False, reason=exc.message)
        else:
            capture = capture_diverged(
                host, self.node, source, timeout=600.0,
                enabled=bool(self.options.capture_diverged),
            )  # fmt: skip
        if capture.captured:
            try:
                self.ctx.keep_diverged(capture.to_dict())
            except Exception as exc:  # too large for the store, say: never resync unasked
                capture = Capture(
                    site=site, captured=False, since_lsn=capture.since_lsn,
                    reason=f"the capture ({len(capture.changes)} rows) could not be kept: "
                    f"{getattr(exc, 'message', None) or exc}",
                )  # fmt: skip
        summary = capture.summary()
        if not capture.captured:
            if not self.ctx.options.get("accept_data_loss"):
                self.ctx.remember("diverged", summary)
                self.ctx.ask_approval(
                    self.spec.id,
                    f"what {site} committed after the failover cannot be read "
                    f"({capture.reason}); the resync erases it: approve to resync anyway, "
                    f"or abort and look first",
                )
            summary["loss_accepted"] = True
        self.ctx.remember("diverged", summary)
        if capture.changes:
            self.ctx.log(
                f"{site} committed {capture.transactions} transaction(s), "
                f"{len(capture.changes)} row(s) after the fork: `failback diverged "
                f"{self.ctx.run_id}`"
            )
        return summary

    def undo(self) -> dict[str, Any] | None:
        """An isolated start an interrupted capture left running goes away; the node is
        left stopped (the safe state of a stale primary)."""
        return {"stopped_isolated": stop_isolated(self.host(), self.node)}

    def undone(self) -> bool | None:
        """Proved undone when no isolated start's socket directory is left."""
        return not self.host().exists(socket_dir(self.node))
