"""``failback monitor``: the long-running process, on asyncio.

Tasks: one per probe (each on its own clock, blocking work in a thread pool sized
so no probe waits for a thread), one reconcile loop per service (decisions run in
that service's own thread: they read the journal and may fence or change
replication, and must never stall the probes), one pump that forwards every
journal event to the log and the webhooks, and on one machine one writer of every
service's heartbeat and health (``monitor.saves``: one journal transaction for all).

One monitor per state directory (an flock): two monitors would race each other's
decisions. SIGTERM or SIGINT stops probing and deciding at once, lets a run in
progress finish for up to ``grace`` seconds (else it is left ``interrupted`` and the
next monitor continues it: a monitor continues only the runs a monitor started), and
exits 0, marking itself stopped in the journal (``failback status`` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

from failback.config import Topology
from failback.config.journal import journal_for
from failback.drivers.kept import Kept
from failback.errors import StateError, UsageError
from failback.hosts import HostSet
from failback.model.secrets import Redactor
from failback.monitor.capture_keeper import KEEP_EVERY_S
from failback.monitor.failsafe import FailsafeServer
from failback.monitor.leadership import Leadership
from failback.monitor.notify import Notifier, event_document
from failback.monitor.reconcile import TICK_S, ServiceMonitor, sees_differently
from failback.monitor.run_worker import JournalPerThread
from failback.monitor.saves import FLUSH_S, Saves
from failback.monitor.scheduler import ProbeThreads, phase, run_probe
from failback.monitor.site_guard import CHECK_S, SiteGuard
from failback.observe.probes import ProbeHealth, build_probes

RETRY_S = 0.2
"""How soon a monitor tries etcd again after a renewal that failed."""
PUMP_S = 0.2


class MonitorLock:
    """``STATE_DIR/locks/monitor.lock``: one monitor per state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "locks" / "monitor.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode().strip() or "?"
            os.close(fd)
            raise StateError(
                f"a monitor already runs for {self.path.parent.parent} (process {other})",
                hint="one monitor per state directory; stop the other one first",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Monitor:
    """Watches every service of a topology and acts on their policies."""

    def __init__(
        self,
        topology: Topology,
        state_dir: Path,
        *,
        log: TextIO | None = None,
        grace: float = 30.0,
        leadership: Leadership | None = None,
        log_text: bool = False,
        lifecycle: Callable[[str], None] | None = None,
        watchdog_s: float | None = None,
    ) -> None:
        self.topology = topology
        self.log_text = log_text
        """``--log-format text``: event lines for people instead of JSON lines."""
        self.watchdog_s = watchdog_s
        """Say ``alive`` this often from the event loop (systemd's watchdog: a loop that
        stops turning gets the monitor restarted); None: never."""
        self.lifecycle = lifecycle or (lambda state: None)
        """Told ``ready`` once the monitor really monitors (monitor.started journaled,
        probes and loops started) and ``stopping`` when asked to stop: systemd's
        readiness protocol (see failback.cli.sdnotify)."""
        self.state_dir = Path(state_dir)
        self.log = log or sys.stdout
        self.grace = grace
        self.leadership = leadership
        """This node's seat in the control plane; None on one machine (always acts)."""
        self.failsafe = self._failsafe_server()
        self.hosts: HostSet = topology.open_hosts()
        """The machines probes observe through, connected for the monitor's lifetime."""
        self.run_hosts: HostSet = topology.open_hosts()
        """The connections the monitor's runs use: opened at start and kept, so that a
        failover spends no SSH handshake inside the clients' outage; apart from the
        probes', so that a probe giving up on a slow machine (and dropping that
        connection) never cuts a run's request in flight."""
        self.journals = JournalPerThread(self.state_dir)
        self.kept = Kept()
        """Connections the probes keep open between attempts (a database's: a fresh one
        per attempt costs the monitor and the server more than the observation itself)."""
        self.saves = Saves() if leadership is None else None
        """Every service's heartbeat and health, written together (one machine: a
        control plane's journal is etcd's, written by each service as before)."""
        self.services: list[ServiceMonitor] = []
        for name, service in topology.services.items():
            probes = build_probes(name, service, self.hosts, self.kept)
            self.services.append(
                ServiceMonitor(
                    name=name,
                    service=service,
                    topology=topology,
                    state_dir=self.state_dir,
                    journals=self.journals,
                    health={p.key: ProbeHealth(p) for p in probes},
                    hosts=self.run_hosts,
                    seat=leadership,
                    saver=self.saves.put if self.saves is not None else None,
                )
            )

    async def run(self, stop: asyncio.Event) -> None:
        self.run_hosts.warm_up(self.run_hosts.names)  # in the background
        probes = [(svc, h.probe) for svc in self.services for h in svc.health.values()]
        pool = ProbeThreads(max_threads=len(probes) + 4)
        deciders = {
            svc.name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"svc-{svc.name}")
            for svc in self.services
        }
        pump = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        loop = asyncio.get_running_loop()
        redactor = Redactor.for_topology(self.topology, None)
        notifier = Notifier(
            list(self.topology.notifications.webhooks),
            self.log,
            text=self.log_text,
            redact=redactor.text,
        )
        notifier.start()
        cursor = await loop.run_in_executor(pump, lambda: self.journals.get().last_event_id())
        await loop.run_in_executor(pump, self._event, "monitor.started", self._started_message())
        wake = {svc.name: asyncio.Event() for svc in self.services}

        self._lead_wake = asyncio.Event()

        def on_result(svc: ServiceMonitor, probe: Any, result: Any) -> None:
            before = svc.health[probe.key].last
            if svc.on_result(probe, result):
                wake[svc.name].set()
                if self.leadership is not None and probe.site == self.leadership.site:
                    self._lead_wake.set()  # the member key says what this site sees
            elif sees_differently(before, result):
                wake[svc.name].set()  # a promoted standby is fenced without waiting a tick

        probe_stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                run_probe(p, pool, lambda pr, r, s=svc: on_result(s, pr, r), probe_stop),
                name=f"probe-{svc.name}-{p.key}",
            )
            for svc, p in probes
        ]
        tasks += [
            asyncio.create_task(self._reconcile_loop(svc, deciders[svc.name], wake[svc.name], stop))
            for svc in self.services
        ]
        capturing = [svc for svc in self.services if svc.capture is not None]
        for k, svc in enumerate(capturing):  # a thread each: one slow primary holds no other
            capturer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture")
            offset = phase(k) * KEEP_EVERY_S
            tasks.append(asyncio.create_task(self._keep_captures(svc, capturer, stop, offset)))
        if self.leadership is not None:
            # the journal's copy reaches the log only through the leader: say it here too
            notifier.emit(self._local_event("monitor.started", self._started_message()))
            seat = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadership")
            tasks.append(asyncio.create_task(self._lead(seat, notifier, probe_stop)))
            if self.failsafe is not None:
                self.failsafe.start()
            guard = self._site_guard(notifier)
            guard_stop = threading.Event()
            if guard is not None:
                # a thread of its own, not a task: the fence must start within the margin
                # even while the event loop is late (a busy machine, a slow callback)
                guarding = threading.Thread(
                    target=self._guard, args=(guard, guard_stop), name="site-guard", daemon=True
                )
                guarding.start()
        if self.saves is not None:
            saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saves")
            tasks.append(asyncio.create_task(self._save(self.saves, saver, stop)))
        pump_task = asyncio.create_task(self._pump(pump, notifier, cursor, stop))
        self.lifecycle("ready")
        if self.watchdog_s is not None:
            tasks.append(asyncio.create_task(self._alive(self.watchdog_s, stop)))
        await stop.wait()
        self.lifecycle("stopping")
        probe_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.saves is not None:  # the last reconciles' saves, before "stopped" is
            with contextlib.suppress(Exception):
                await loop.run_in_executor(saver, lambda: self.saves.flush(self.journals.get()))
            saver.shutdown(wait=True)
        await self._wait_runs()
        if self.acting():  # a follower never wrote the services' documents
            for svc in self.services:
                with contextlib.suppress(Exception):  # the journal is busy: status ages it out
                    await loop.run_in_executor(pump, svc.mark_stopped, time.time())
        with contextlib.suppress(Exception):  # a control plane's etcd may be out of reach
            await loop.run_in_executor(pump, self._event, "monitor.stopped", "monitor stopped")
        await pump_task
        if self.acting():
            await self._pump_once(pump, notifier, pump_task.result())
        if self.leadership is not None:
            if guard is not None:
                guard_stop.set()
                await loop.run_in_executor(None, guarding.join)
            await loop.run_in_executor(seat, self.leadership.close)
            seat.shutdown(wait=True)
            notifier.line(event_document(self._local_event("monitor.stopped", "monitor stopped")))
        await notifier.close()
        pool.shutdown()
        for executor in (*deciders.values(), pump):
            executor.shutdown(wait=True)

    def close(self) -> None:
        """Close the failsafe server, the probes' connections, and the runs' unless a run
        still uses them: closing would fail its step in flight (and start its undo) as the
        monitor exits, where the process ending leaves it interrupted, for the next one."""
        if self.failsafe is not None:
            self.failsafe.close()
        self.kept.close()
        self.hosts.close()
        workers = [w for svc in self.services for w in (svc.worker, svc.aborter)]
        if any(w is not None and w.alive() for w in workers):
            return
        self.run_hosts.close()

    def _started_message(self) -> str:
        names = ", ".join(s.name for s in self.services)
        node = "" if self.leadership is None else f" as node {self.leadership.node}"
        return f"monitor started (pid {os.getpid()}){node} for {names}"

    async def _alive(self, every_s: float, stop: asyncio.Event) -> None:
        """Tell the watchdog the event loop turns (probes and decisions run on it)."""
        while not stop.is_set():
            self.lifecycle("alive")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)

    def acting(self) -> bool:
        """Whether this monitor may reconcile now: always on one machine; with a control
        plane only while it leads by its own clock (checked before every pass)."""
        return self.leadership is None or self.leadership.may_act()

    async def _lead(
        self, seat: ThreadPoolExecutor, notifier: Notifier, stop: asyncio.Event
    ) -> None:
        """The control plane's clock: renew membership, keep or seek leadership, and say
        so in the log at once (written directly: the journal itself may be in the etcd
        that cannot be reached)."""
        assert self.leadership is not None
        loop = asyncio.get_running_loop()
        reported_error: str | None = None
        self.leadership.begin()
        while not stop.is_set():
            started = loop.time()
            self._lead_wake.clear()
            self.leadership.site_down(self._site_failures())
            await loop.run_in_executor(seat, self.leadership.tick)
            error = self.leadership.last_error
            if error != reported_error:
                reported_error = error
                kind, message = (
                    ("control_plane.unreachable", f"etcd: {error}")
                    if error
                    else ("control_plane.reachable", "etcd answers again")
                )
                notifier.emit(self._local_event(kind, message))
            for kind, message in self.leadership.take_changes():
                notifier.emit(self._local_event(kind, message))
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(seat, self._event, kind, message)
            # after a failed renewal, try again soon: etcd electing a new raft leader
            # answers again within about a second, and the lease must be renewed before
            # this node's own deadline (TTL minus the margin) makes it stop or fence
            period = RETRY_S if self.leadership.last_error else self.leadership.period
            left = period - (loop.time() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, self._lead_wake), max(left, 0.05))

    def _site_failures(self) -> list[str]:
        """This node's site's probes judged failed now (what its member key reports)."""
        assert self.leadership is not None
        return [
            key
            for svc in self.services
            for key, health in svc.health.items()
            if health.probe.site == self.leadership.site and health.failed
        ]

    def _failsafe_server(self) -> FailsafeServer | None:
        """The server answering the other nodes on this node's peer address (bound now,
        so that a port in use is refused before anything starts; started by ``run``)."""
        control_plane = self.topology.control_plane
        if self.leadership is None or control_plane is None:
            return None
        peer = control_plane.nodes[self.leadership.node].peer
        if peer is None or control_plane.peer_token is None:
            return None
        token = control_plane.peer_token.resolve()
        try:
            return FailsafeServer(peer, token, self.leadership.confirm_failsafe)
        except OSError as exc:
            raise UsageError(
                f"node {self.leadership.node} cannot answer the other nodes on {peer}: "
                f"{exc.strerror or exc}",
                hint=f"another process uses that port, or it is not this machine's address: "
                f"check control_plane.nodes.{self.leadership.node}.peer",
            ) from None

    def _site_guard(self, notifier: Notifier) -> SiteGuard | None:
        """The self-fencing of this node's site (none for a witness)."""
        assert self.leadership is not None
        control_plane = self.topology.control_plane
        if self.leadership.site is None or control_plane is None:
            return None
        loop = asyncio.get_running_loop()

        def emit(kind: str, message: str, data: dict[str, Any]) -> None:
            event = self._local_event(kind, message)
            event["data"] = {**event["data"], **data}
            loop.call_soon_threadsafe(notifier.emit, event)

        token = control_plane.peer_token.resolve() if control_plane.peer_token else None
        return SiteGuard(self.topology, self.leadership, self.run_hosts, emit, token)

    def _guard(self, guard: SiteGuard, stop: threading.Event) -> None:
        """The site guard's clock, in its own thread: a check every ``CHECK_S``."""
        while not stop.is_set():
            try:
                guard.check()
            except Exception as exc:  # the guard must outlive one broken check
                notifier_line = f"site guard failed: {type(exc).__name__}: {exc}"
                self.log.write(notifier_line + "\n")
            stop.wait(CHECK_S)

    def _local_event(self, kind: str, message: str) -> dict[str, Any]:
        assert self.leadership is not None
        return {
            "ts": time.time(),
            "kind": kind,
            "message": message,
            "data": {"pid": os.getpid(), **self.leadership.status()},
        }

    def _event(self, kind: str, message: str) -> None:
        self.journals.get().add_event(kind, message, data={"pid": os.getpid()})

    async def _reconcile_loop(
        self,
        svc: ServiceMonitor,
        executor: ThreadPoolExecutor,
        wake: asyncio.Event,
        stop: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        last_error = ("", 0.0)
        while not stop.is_set():
            wake.clear()
            if not self.acting():  # a follower watches (its probes run) and never acts
                svc.forget_edges()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), TICK_S)
                continue
            now = time.time()
            views = svc.views(records=svc.save_due(now))
            try:
                await loop.run_in_executor(executor, svc.reconcile, views, now)
            except Exception as exc:  # a broken tick is reported, the loop goes on
                message = f"{svc.name}: reconcile failed: {type(exc).__name__}: {exc}"
                if message != last_error[0] or time.time() - last_error[1] > 30:
                    last_error = (message, time.time())
                    with contextlib.suppress(Exception):
                        await loop.run_in_executor(executor, self._event, "monitor.error", message)
                svc.steady = False  # a broken tick is tried again soon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), svc.next_tick())

    async def _keep_captures(
        self, svc: ServiceMonitor, executor: ThreadPoolExecutor, stop: asyncio.Event, offset: float
    ) -> None:
        """Every ``KEEP_EVERY_S``, on a thread of its own: a slow primary delays only this.
        A round another service's keeper just made on the same primary is taken on the
        event loop instead (``CaptureKeeper.round_at_hand``): no thread handoff.

        The keepers start ``offset`` apart (``scheduler.phase``), as the probes do: all
        waking in the same instant, they would all find the last shared round just too
        old, together, and all go to their threads to wait for one new round."""
        loop = asyncio.get_running_loop()
        assert svc.capture is not None
        svc.capture.kept = self.kept
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), offset)
            while not stop.is_set():
                if self.acting() and svc.capture.round_at_hand() is None:
                    with contextlib.suppress(Exception):  # reported by the keeper
                        await loop.run_in_executor(executor, svc.capture.round)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), KEEP_EVERY_S)
        finally:
            executor.shutdown(wait=False)

    async def _save(self, saves: Saves, executor: ThreadPoolExecutor, stop: asyncio.Event) -> None:
        """Write the services' pending heartbeats and health every FLUSH_S (``Saves``)."""
        loop = asyncio.get_running_loop()
        reported = 0.0
        while not stop.is_set():
            try:
                await loop.run_in_executor(executor, lambda: saves.flush(self.journals.get()))
            except Exception as exc:  # the journal is busy: the saves stay pending
                if time.time() - reported > 30:
                    reported = time.time()
                    message = f"saving health failed: {type(exc).__name__}: {exc}"
                    with contextlib.suppress(Exception):
                        await loop.run_in_executor(executor, self._event, "monitor.error", message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FLUSH_S)

    async def _pump(
        self, executor: ThreadPoolExecutor, notifier: Notifier, cursor: int, stop: asyncio.Event
    ) -> int:
        """Forward journal events to the log and the webhooks. With a control plane the
        journal is shared: only the leader forwards (each event reaches a webhook once);
        a follower keeps its cursor at the newest event, so a node that wins forwards
        from about when it won (a pump interval at most before)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            if self.acting():
                cursor = await self._pump_once(executor, notifier, cursor)
            else:  # a follower keeps its place: when it wins, it forwards what it writes
                with contextlib.suppress(Exception):
                    cursor = await loop.run_in_executor(
                        executor, lambda: self.journals.get().last_event_id()
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PUMP_S)
        return cursor

    async def _pump_once(
        self, executor: ThreadPoolExecutor, notifier: Notifier, cursor: int
    ) -> int:
        loop = asyncio.get_running_loop()
        try:
            events = await loop.run_in_executor(
                executor, lambda: self.journals.get().events_since(cursor)
            )
        except Exception:  # the journal is busy: the next pass gets them
            return cursor
        for event in events:
            notifier.emit(event)
            cursor = int(event["id"])
        return cursor

    async def _wait_runs(self) -> None:
        """Let runs in progress end (bounded): the next monitor continues an interrupted one."""
        deadline = time.monotonic() + self.grace
        for svc in self.services:
            worker = svc.worker
            while worker is not None and worker.alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)


async def _first(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def open_leadership(topology: Topology, node: str | None, api: str | None) -> Leadership | None:
    """This node's seat when the topology has a control plane (None on one machine)."""
    check_node(topology, node)
    if topology.control_plane is None or node is None:
        return None
    return Leadership(topology.control_plane, node, topology.control_plane.open_etcd(), api=api)


def check_node(topology: Topology, node: str | None) -> None:
    """``--node`` must name a node of the control plane, and is needed exactly when the
    topology has one: a wrong or missing name is refused before anything starts."""
    control_plane = topology.control_plane
    if control_plane is None:
        if node is not None:
            raise UsageError(
                f"--node {node}: {topology.path.name} has no control_plane section",
                hint="add control_plane: (etcd endpoints, nodes) to run several monitors, "
                "or drop --node to run one monitor on this machine",
            )
        return
    if node is None:
        raise UsageError(
            f"{topology.path.name} has a control plane: say which of its nodes this monitor is",
            hint=f"failback monitor --node NAME (nodes: {', '.join(control_plane.nodes)})",
        )
    control_plane.node(node)


def run_monitor(
    topology: Topology,
    state_dir: Path,
    *,
    log: TextIO | None,
    grace: float,
    node: str | None = None,
    api: str | None = None,
    log_text: bool = False,
    lifecycle: Callable[[str], None] | None = None,
    watchdog_s: float | None = None,
) -> None:
    """Foreground entry point: run until SIGTERM/SIGINT, then exit cleanly."""
    leadership = open_leadership(topology, node, api)
    journal_for(topology, state_dir).close()  # binds the directory: every thread opens the same
    lock = MonitorLock(state_dir)
    lock.acquire()
    monitor: Monitor | None = None
    try:
        monitor = Monitor(
            topology,
            state_dir,
            log=log,
            grace=grace,
            leadership=leadership,
            log_text=log_text,
            lifecycle=lifecycle,
            watchdog_s=watchdog_s,
        )

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await monitor.run(stop)

        asyncio.run(main())
    finally:
        if monitor is not None:
            monitor.close()
        if leadership is not None:
            leadership.client.close()
        lock.release()
