"""The probe scheduler's judging of a call that hangs (a dead address, a partition)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from failback.monitor.scheduler import run_probe
from failback.observe.probes import Probe, ProbeResult


def _probe(run: object, *, interval: float, timeout: float) -> Probe:
    return Probe(
        key="db@dc1", kind="component", site="dc1", component="db", driver="postgres",
        interval=interval, timeout=timeout, threshold=3, run=run,  # type: ignore[arg-type]
    )  # fmt: skip


def _collect(probe: Probe, want: int, *, oks: int = 0) -> list[ProbeResult]:
    """Run the scheduler until ``want`` results (and ``oks`` passing ones) arrived."""
    results: list[ProbeResult] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_result(_: Probe, result: ProbeResult) -> None:
            results.append(result)
            if len(results) >= want and sum(r.ok for r in results) >= oks:
                stop.set()

        pool = ThreadPoolExecutor(max_workers=2)
        try:
            await asyncio.wait_for(run_probe(probe, pool, on_result, stop), 30)
        finally:
            pool.shutdown(wait=False)  # a hung call is released by its test

    asyncio.run(main())
    return results


def test_a_hung_call_fails_once_per_interval_after_its_timeout_and_runs_once() -> None:
    """timeout 2 s, interval 0.1 s: the 2nd and 3rd failures follow the 1st by an
    interval each (not by another timeout), and the hung call is not started again."""
    release = threading.Event()
    calls = []

    def hangs() -> ProbeResult:
        calls.append(time.monotonic())
        release.wait(20)
        return ProbeResult(ok=True, detail="late", at=time.time(), duration_s=0.0)

    try:
        results = _collect(_probe(hangs, interval=0.1, timeout=2.0), 3)
    finally:
        release.set()
    assert [r.ok for r in results] == [False, False, False]
    assert all(r.timed_out for r in results)
    assert len(calls) == 1, "a hung call must not pile up threads"
    first, second, third = (r.at for r in results)
    assert first - calls[0] >= 1.9  # the first failure waits the whole timeout
    assert second - first < 1.0 and third - second < 1.0  # then one per interval
    assert "no answer for" in results[2].detail, results[2].detail


def test_a_call_that_answers_late_is_recorded_and_the_next_starts_afresh() -> None:
    """A hung call that finally answers gives its own result; the next attempt is new."""
    answers = iter([0.5, 0.0, 0.0])
    calls = []

    def slow_then_fast() -> ProbeResult:
        calls.append(time.monotonic())
        time.sleep(next(answers, 0.0))
        return ProbeResult(ok=True, detail="ok", at=time.time(), duration_s=0.0)

    results = _collect(_probe(slow_then_fast, interval=0.1, timeout=0.2), 1, oks=2)
    oks = [r.ok for r in results]
    assert oks[0] is False, oks  # timed out; then the late answer counts, then a new call
    assert oks[-2:] == [True, True] and len(calls) == 2, (oks, len(calls))
