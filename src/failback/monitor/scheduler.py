"""Run each probe on its own clock, concurrently, with a timeout that counts as a failure.

Every probe is its own asyncio task, and its blocking function runs in a thread pool
sized for all probes at once, so one slow check never delays the others. A probe
whose function is still running when its timeout passes is recorded as failed; its
thread is not started again until the hung call returns (a hung connection attempt
must not pile up threads), and every further interval it is still hung counts as
another failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from failback.observe.probes import Probe, ProbeResult


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
    pool: Executor,
    on_result: Callable[[Probe, ProbeResult], None],
    stop: asyncio.Event,
) -> None:
    """Attempt ``probe`` every ``probe.interval`` seconds until ``stop`` is set.

    An attempt that has not answered after ``probe.timeout`` is one failure; while it
    still hangs, every further ``probe.interval`` is another. A dead address (a machine
    gone, a partition) thus fails ``threshold`` times in ``timeout + (threshold - 1) *
    interval`` seconds, as a refused one does in ``(threshold - 1) * interval``, instead
    of once per ``timeout`` (or per connect timeout of the call that hangs).
    """
    loop = asyncio.get_running_loop()
    inflight: asyncio.Future[Any] | None = None
    call_started = 0.0
    while not stop.is_set():
        tick = loop.time()
        started = time.monotonic()
        if inflight is None:
            inflight = loop.run_in_executor(pool, probe.run)
            call_started = started
            wait = probe.timeout
        else:  # still hung: the next interval without an answer is the next failure
            wait = probe.interval
        try:
            result = await asyncio.wait_for(asyncio.shield(inflight), wait)
            inflight = None
        except TimeoutError:
            hung = time.monotonic() - call_started
            detail = f"timed out after {probe.timeout:g}s"
            if hung > probe.timeout + 0.05:
                detail += f" (no answer for {hung:.1f}s)"
            result = _failed(detail, started, timed_out=True)
        except Exception as exc:  # a probe function must not kill its task
            inflight = None
            result = _failed(f"{type(exc).__name__}: {exc}", started)
        on_result(probe, result)
        remaining = probe.interval - (loop.time() - tick)
        if remaining > 0 and inflight is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)
