"""Run each probe on its own clock, concurrently, with a timeout that counts as a failure.

Every probe is its own asyncio task, and its blocking function runs in a thread pool
sized for all probes at once (``ProbeThreads``), so one slow check never delays the
others. A probe
whose function is still running when its timeout passes is recorded as failed; its
thread is not started again until the hung call returns (a hung connection attempt
must not pile up threads), and every further interval it is still hung counts as
another failure.

Probes started together do not run together: each one's first attempt is put at its own
point of the interval (``phase``), spread evenly over it, and later attempts keep about
that point. Otherwise a monitor watching many services that share one router or database
would wake all their probes in the same instant, every interval: a burst that a shared
server may refuse (HAProxy's runtime socket answers EAGAIN when its queue is full), and
healthy components recorded as failed (bench/monitor_scale.py).

An attempt whose answer is already at hand (``Probe.at_hand``: another probe of the same
server received it a moment ago, as the drivers share answers) is settled on the event
loop, without a thread: at a thousand components sharing a few servers, the threads
and their handoffs were most of the monitor's CPU, and hundreds of threads taking turns
on the GIL timed healthy probes out. Only a success is settled this way; every other
attempt, and every failure, is the probe's own call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from failback.observe.probes import Probe, ProbeResult

GOLDEN = (5**0.5 - 1) / 2
"""Successive multiples of it, modulo 1, fill [0, 1) evenly however many there are (the
gaps take at most three sizes): the k-th probe started is put at ``k * GOLDEN`` mod 1 of
its interval, so the attempts of the first N probes are about ``interval / N`` apart."""
_started = itertools.count()

MAX_START_SPREAD_S = 3.0
"""The first attempts are spread over the interval, but never over more than this: a
check run every 10 minutes must still be seen within seconds of the monitor's start (a
failback waits for every check its gates use; spread over its whole interval, its first
result came up to 10 minutes late and held the failback back that long)."""


def phase(k: int) -> float:
    """The share of its interval the ``k``-th probe started waits before its first
    attempt: 0 for the first, then spread evenly over [0, 1)."""
    return (k * GOLDEN) % 1.0


class ProbeThreads:
    """The threads probe functions run in: one more is started whenever a call finds none
    idle (up to ``max_threads``: one per probe, since a hung call is never started again
    while it hangs), so no probe waits for another's slow check.

    What ``ThreadPoolExecutor`` does, without what a probe does not need: a
    ``concurrent.futures.Future`` (with its own condition variable) per call, chained
    to an asyncio future, and a semaphore made of Python locks. A call here is a queue
    put; its answer comes back to the event loop in one ``call_soon_threadsafe``. Threads
    are daemons: a call hung on a dead address never holds up the monitor's exit.
    """

    def __init__(self, max_threads: int, name: str = "probe") -> None:
        self.max_threads = max_threads
        self.name = name
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False

    def call(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn`` in a thread; its answer (or exception) completes the future. On the
        event loop only."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("probe threads shut down")
            if self._idle > 0:
                self._idle -= 1  # that idle thread takes this call
                start = False
            else:
                start = self._threads < self.max_threads
                self._threads += start
        self._calls.put((fn, future))
        if start:
            threading.Thread(
                target=self._work, name=f"{self.name}-{self._threads}", daemon=True
            ).start()
        return future

    def _work(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, future = item
            try:
                answer, failure = fn(), None
            except BaseException as exc:  # the event loop's side says what it was
                answer, failure = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for it
                future.get_loop().call_soon_threadsafe(_settle, future, answer, failure)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """No more calls; idle threads end, busy ones when their call returns."""
        with self._lock:
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._calls.put(None)


def _settle(future: asyncio.Future[Any], answer: Any, failure: BaseException | None) -> None:
    if future.done():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(answer)


def _failed(detail: str, started: float, *, timed_out: bool = False) -> ProbeResult:
    return ProbeResult(
        ok=False,
        detail=detail,
        at=time.time(),
        duration_s=time.monotonic() - started,
        timed_out=timed_out,
    )


async def run_probe(
    probe: Probe,
    pool: ProbeThreads | Executor,
    on_result: Callable[[Probe, ProbeResult], None],
    stop: asyncio.Event,
    *,
    offset: float | None = None,
) -> None:
    """Attempt ``probe`` every ``probe.interval`` seconds until ``stop`` is set, the first
    time after ``offset`` seconds (default: the next ``phase`` of its interval, or of
    ``MAX_START_SPREAD_S`` when the interval is longer).

    An attempt that has not answered after ``probe.timeout`` is one failure; while it
    still hangs, every further ``probe.interval`` is another. A dead address (a machine
    gone, a partition) thus fails ``threshold`` times in ``timeout + (threshold - 1) *
    interval`` seconds, instead of once per ``timeout`` (or per connect timeout of the
    call that hangs). After a failure that ended (a refusal, an error), the next attempt
    starts after the probe's ``recheck_interval`` instead, until ``threshold`` failures in
    a row (``Probe.next_interval``): a refused one fails ``threshold`` times in ``(threshold
    - 1) * recheck_interval``.

    The waits are plain futures with a timer (``_until``), not ``asyncio.wait_for`` of
    ``stop.wait()`` or of a shielded future: those make a task, a timer and a
    cancellation per wait, and a monitor of a thousand components waits twice per
    check (bench/monitor_scale.py: about half the event loop's time went there).
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.ensure_future(stop.wait())
    inflight: asyncio.Future[Any] | None = None
    call_started = 0.0
    failures = 0  # in a row, as the monitor judges them (ProbeHealth.record)
    try:
        if offset is None:
            offset = phase(next(_started)) * min(probe.interval, MAX_START_SPREAD_S)
        if offset > 0:
            await _until(stopping, offset)
        while not stop.is_set():
            tick = loop.time()
            started = time.monotonic()
            result = _at_hand(probe) if inflight is None else None
            if result is None:
                if inflight is None:
                    if isinstance(pool, ProbeThreads):
                        inflight = pool.call(probe.run)
                    else:
                        inflight = loop.run_in_executor(pool, probe.run)
                    call_started, wait = started, probe.timeout
                else:
                    # still hung: the next interval without an answer is the next
                    # failure, at the steady interval (one stalled call is one
                    # observation: counting it again every recheck_interval would
                    # declare a short stall a failure)
                    wait = probe.interval
                result, inflight = await _outcome(inflight, wait, probe, started, call_started)
            on_result(probe, result)
            failures = 0 if result.ok else failures + 1
            remaining = probe.next_interval(failures) - (loop.time() - tick)
            if remaining > 0 and inflight is None:
                await _until(stopping, remaining)
    finally:
        stopping.cancel()


async def _outcome(
    call: asyncio.Future[Any], wait: float, probe: Probe, started: float, call_started: float
) -> tuple[ProbeResult, asyncio.Future[Any] | None]:
    """The attempt's result after waiting up to ``wait`` for ``call``: the call's own once
    it is done (then no call is in flight), or a timeout while it still hangs (returned,
    to be waited for again)."""
    if not await _until(call, wait):
        hung = time.monotonic() - call_started
        detail = f"timed out after {probe.timeout:g}s"
        if hung > probe.timeout + 0.05:
            detail += f" (no answer for {hung:.1f}s)"
        return _failed(detail, started, timed_out=True), call
    try:
        return call.result(), None
    except Exception as exc:  # a probe function must not kill its task
        return _failed(f"{type(exc).__name__}: {exc}", started), None


def _at_hand(probe: Probe) -> ProbeResult | None:
    """The attempt settled on the event loop from an answer at hand (``Probe.at_hand``),
    or None: the probe's function runs in a thread. A shortcut that fails is None too
    (the function then says what is wrong)."""
    if probe.at_hand is None:
        return None
    try:
        return probe.at_hand()
    except Exception:
        return None


async def _until(future: asyncio.Future[Any], seconds: float) -> bool:
    """Wait until ``future`` is done or ``seconds`` passed; True when it is done. The
    future itself is never cancelled (a hung call goes on; ``stop`` stays set)."""
    if future.done():
        return True
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    return future.done()
