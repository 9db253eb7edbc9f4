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
    """Attempt ``probe`` every ``probe.interval`` seconds until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    inflight: asyncio.Future[Any] | None = None
    while not stop.is_set():
        tick = loop.time()
        started = time.monotonic()
        if inflight is None:
            inflight = loop.run_in_executor(pool, probe.run)
        try:
            result = await asyncio.wait_for(asyncio.shield(inflight), probe.timeout)
            inflight = None
        except TimeoutError:
            result = _failed(f"timed out after {probe.timeout:g}s", started, timed_out=True)
        except Exception as exc:  # a probe function must not kill its task
            inflight = None
            result = _failed(f"{type(exc).__name__}: {exc}", started)
        on_result(probe, result)
        remaining = probe.interval - (loop.time() - tick)
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)
