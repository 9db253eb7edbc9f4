"""The probe scheduler's judging of a call that hangs (a dead address, a partition), and
how it spreads the probes it starts together over their interval."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from failback.monitor.scheduler import MAX_START_SPREAD_S, ProbeThreads, phase, run_probe
from failback.observe.probes import Probe, ProbeResult


def _probe(run: object, *, interval: float, timeout: float, recheck: float | None = None) -> Probe:
    return Probe(
        key="db@dc1", kind="component", site="dc1", component="db", driver="postgres",
        interval=interval, timeout=timeout, threshold=3, run=run,  # type: ignore[arg-type]
        recheck_interval=recheck,
    )  # fmt: skip


def _collect(probe: Probe, want: int, *, oks: int = 0, threads: bool = True) -> list[ProbeResult]:
    """Run the scheduler until ``want`` results (and ``oks`` passing ones) arrived, on the
    monitor's ``ProbeThreads`` (or on a ``ThreadPoolExecutor``: both are accepted)."""
    results: list[ProbeResult] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_result(_: Probe, result: ProbeResult) -> None:
            results.append(result)
            if len(results) >= want and sum(r.ok for r in results) >= oks:
                stop.set()

        pool = ProbeThreads(2) if threads else ThreadPoolExecutor(max_workers=2)
        try:
            await asyncio.wait_for(run_probe(probe, pool, on_result, stop, offset=0), 30)
        finally:
            if isinstance(pool, ProbeThreads):
                pool.shutdown()
            else:
                pool.shutdown(wait=False)  # a hung call is released by its test

    asyncio.run(main())
    return results


@pytest.fixture(params=[True, False], ids=["probe-threads", "executor"])
def threads(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_a_hung_call_fails_once_per_interval_after_its_timeout_and_runs_once(
    threads: bool,
) -> None:
    """timeout 2 s, interval 0.1 s: the 2nd and 3rd failures follow the 1st by an
    interval each (not by another timeout), and the hung call is not started again."""
    release = threading.Event()
    calls = []

    def hangs() -> ProbeResult:
        calls.append(time.monotonic())
        release.wait(20)
        return ProbeResult(ok=True, detail="late", at=time.time(), duration_s=0.0)

    try:
        results = _collect(_probe(hangs, interval=0.1, timeout=2.0), 3, threads=threads)
    finally:
        release.set()
    assert [r.ok for r in results] == [False, False, False]
    assert all(r.timed_out for r in results)
    assert len(calls) == 1, "a hung call must not pile up threads"
    first, second, third = (r.at for r in results)
    assert first - calls[0] >= 1.9  # the first failure waits the whole timeout
    assert second - first < 1.0 and third - second < 1.0  # then one per interval
    assert "no answer for" in results[2].detail, results[2].detail


def test_a_call_that_answers_late_is_recorded_and_the_next_starts_afresh(threads: bool) -> None:
    """A hung call that finally answers gives its own result; the next attempt is new."""
    answers = iter([0.5, 0.0, 0.0])
    calls = []

    def slow_then_fast() -> ProbeResult:
        calls.append(time.monotonic())
        time.sleep(next(answers, 0.0))
        return ProbeResult(ok=True, detail="ok", at=time.time(), duration_s=0.0)

    results = _collect(_probe(slow_then_fast, interval=0.1, timeout=0.2), 1, oks=2, threads=threads)
    oks = [r.ok for r in results]
    assert oks[0] is False, oks  # timed out; then the late answer counts, then a new call
    assert oks[-2:] == [True, True] and len(calls) == 2, (oks, len(calls))


def test_a_failure_is_confirmed_at_the_recheck_interval_then_observed_at_the_interval() -> None:
    """HAProxy's fastinter: after a failure the next attempts come ``recheck_interval``
    apart until ``threshold`` failures in a row; a component that stays failed, or
    passes again, is observed at ``interval``; a new failure is confirmed fast again."""
    outcomes = iter([False, False, False, False, True, False, False])
    calls: list[float] = []

    def scripted() -> ProbeResult:
        calls.append(time.monotonic())
        ok = next(outcomes, True)
        return ProbeResult(ok=ok, detail="ok" if ok else "refused", at=time.time(), duration_s=0.0)

    probe = _probe(scripted, interval=0.6, timeout=0.5, recheck=0.05)
    results = _collect(probe, 7)
    assert [r.ok for r in results] == [False, False, False, False, True, False, False]
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    fast = [gaps[0], gaps[1], gaps[5]]  # after the 1st and 2nd failure, after a new one
    slow = [gaps[2], gaps[3], gaps[4]]  # declared failed (3 in a row), and after a pass
    assert all(gap < 0.35 for gap in fast), gaps
    assert all(gap > 0.5 for gap in slow), gaps


def test_the_recheck_interval_is_never_longer_than_the_interval() -> None:
    slow_recheck = _probe(lambda: None, interval=0.1, timeout=0.5, recheck=2.0)
    assert [slow_recheck.next_interval(n) for n in (0, 1, 2, 3)] == [0.1, 0.1, 0.1, 0.1]
    assert _probe(lambda: None, interval=0.1, timeout=0.5).next_interval(1) == 0.1


@pytest.mark.parametrize("count", [2, 3, 8, 100, 1000, 4000])
@pytest.mark.parametrize("first", [0, 1, 57, 10_000])
def test_the_phases_of_probes_started_together_spread_evenly_over_the_interval(
    count: int, first: int
) -> None:
    """However many probes a monitor starts (and however many were started before them),
    two neighbouring first attempts are between 0.4 and 2 intervals/count apart."""
    phases = sorted(phase(k) for k in range(first, first + count))
    assert all(0.0 <= p < 1.0 for p in phases)
    gaps = [b - a for a, b in itertools.pairwise(phases)]
    gaps.append(phases[0] + 1.0 - phases[-1])  # around the circle: the next interval
    assert min(gaps) >= 0.4 / count, (count, first, min(gaps))
    assert max(gaps) <= 2.0 / count, (count, first, max(gaps))
    assert phase(0) == 0.0  # the first probe of a process starts at once


def _first_calls(count: int, interval: float, **kwargs: float) -> list[float]:
    """Start ``count`` probes together; when each one's first attempt ran (monotonic),
    relative to the start."""
    calls: dict[int, float] = {}

    def attempt(i: int) -> ProbeResult:
        calls.setdefault(i, time.monotonic())
        return ProbeResult(ok=True, detail="ok", at=time.time(), duration_s=0.0)

    async def main() -> float:
        stop = asyncio.Event()
        started = time.monotonic()

        def on_result(_: Probe, __: ProbeResult) -> None:
            if len(calls) == count:
                stop.set()

        pool = ThreadPoolExecutor(max_workers=count)
        try:
            probes = [
                _probe(lambda i=i: attempt(i), interval=interval, timeout=interval)
                for i in range(count)
            ]
            await asyncio.wait_for(
                asyncio.gather(*(run_probe(p, pool, on_result, stop, **kwargs) for p in probes)),
                30,
            )
        finally:
            pool.shutdown(wait=True)
        return started

    started = asyncio.run(main())
    return sorted(t - started for t in calls.values())


def test_probes_started_together_make_their_first_attempts_across_the_interval() -> None:
    """Eight probes of a 2 s interval: their first attempts span most of the 2 s (any
    eight consecutive phases span more than 0.85 of it), not one instant."""
    firsts = _first_calls(8, 2.0)
    assert firsts[-1] - firsts[0] >= 1.2, firsts


def test_a_probe_of_a_long_interval_is_first_attempted_within_the_start_spread() -> None:
    """A check run every 10 minutes is seen within seconds of the start, not somewhere in
    its first 10 minutes (a failback waits for the checks its gates use)."""
    firsts = _first_calls(4, 600.0)
    assert max(firsts) < MAX_START_SPREAD_S + 0.5, firsts


def test_an_explicit_offset_delays_the_first_attempt_and_stop_ends_the_wait() -> None:
    firsts = _first_calls(2, 5.0, offset=0.4)
    assert min(firsts) >= 0.39, firsts

    async def stopped_while_waiting() -> list[ProbeResult]:
        stop = asyncio.Event()
        results: list[ProbeResult] = []
        pool = ThreadPoolExecutor(max_workers=1)
        probe = _probe(lambda: pytest.fail("attempted after stop"), interval=1.0, timeout=1.0)
        task = asyncio.create_task(
            run_probe(probe, pool, lambda _, r: results.append(r), stop, offset=30.0)
        )
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        pool.shutdown(wait=True)
        return results

    assert asyncio.run(stopped_while_waiting()) == []


def test_probe_threads_start_a_thread_only_when_none_is_idle_and_pass_exceptions_on() -> None:
    """Five calls that hang together get five threads (none waits for another); later
    calls reuse the idle ones; a function that raises fails its call, not the thread."""
    release = threading.Event()
    running: list[str] = []

    def hangs() -> str:
        running.append(threading.current_thread().name)
        release.wait(10)
        return "late"

    def broken() -> str:
        raise ValueError("no answer")

    async def main() -> tuple[list[str], set[str], str]:
        pool = ProbeThreads(max_threads=8)
        hung = [pool.call(hangs) for _ in range(5)]
        deadline = time.monotonic() + 10
        while len(running) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(*hung)
        await asyncio.sleep(0.05)  # the threads count themselves idle again
        names = {threading.current_thread().name}
        again = await asyncio.gather(
            *(pool.call(lambda: threading.current_thread().name) for _ in range(5))
        )
        with pytest.raises(ValueError, match="no answer"):
            await pool.call(broken)
        after = await pool.call(lambda: "still serving")
        pool.shutdown()
        return answers, set(again) - names, after

    answers, reused, after = asyncio.run(main())
    assert answers == ["late"] * 5
    assert len(set(running)) == 5, "each hung call had its own thread"
    assert reused <= set(running), "idle threads were reused, none started"
    assert after == "still serving"


def test_a_call_that_still_hangs_counts_one_failure_per_interval_not_per_recheck() -> None:
    """One stalled observation is not counted again every ``recheck_interval``: a short
    stall (a fsync, two lost packets) must not be declared a death faster than before."""
    release = threading.Event()

    def hangs() -> ProbeResult:
        release.wait(20)
        return ProbeResult(ok=True, detail="late", at=time.time(), duration_s=0.0)

    try:
        results = _collect(_probe(hangs, interval=0.5, timeout=0.2, recheck=0.05), 3)
    finally:
        release.set()
    first, second, third = (r.at for r in results)
    assert all(r.timed_out for r in results)
    assert second - first >= 0.45 and third - second >= 0.45, (second - first, third - second)


def _at_hand_probe(run: object, at_hand: object, *, interval: float = 0.05) -> Probe:
    return Probe(
        key="db@dc1", kind="component", site="dc1", component="db", driver="postgres",
        interval=interval, timeout=1.0, threshold=3, run=run,  # type: ignore[arg-type]
        at_hand=at_hand,  # type: ignore[arg-type]
    )  # fmt: skip


def test_an_answer_at_hand_settles_the_attempt_without_a_thread() -> None:
    """When another probe's answer is at hand the attempt is settled on the event loop:
    the probe's function is not called, no thread is started."""
    calls: list[str] = []
    loop_thread = threading.current_thread().name

    def run() -> ProbeResult:
        calls.append(threading.current_thread().name)
        return ProbeResult(ok=True, detail="asked", at=time.time(), duration_s=0.0)

    def at_hand() -> ProbeResult:
        calls.append(f"at hand on {threading.current_thread().name}")
        return ProbeResult(ok=True, detail="shared", at=time.time(), duration_s=0.0)

    results = _collect(_at_hand_probe(run, at_hand), 3)
    assert [r.detail for r in results] == ["shared"] * 3
    assert calls == [f"at hand on {loop_thread}"] * 3, "run in a thread"


def test_without_an_answer_at_hand_the_probe_asks_itself() -> None:
    """None (nothing at hand) or a shortcut that raises: the probe's own function runs."""
    shortcuts = iter([None, ValueError("broken"), None])

    def at_hand() -> ProbeResult | None:
        answer = next(shortcuts)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def run() -> ProbeResult:
        return ProbeResult(ok=True, detail="asked", at=time.time(), duration_s=0.0)

    results = _collect(_at_hand_probe(run, at_hand), 3)
    assert [r.detail for r in results] == ["asked"] * 3


def test_a_hung_call_is_not_settled_by_an_answer_at_hand() -> None:
    """While the probe's own call hangs, another probe's answer does not stand in for it:
    the hung call fails once per interval after its timeout, as without sharing."""
    release = threading.Event()
    first = threading.Event()
    asked: list[str] = []

    def hangs() -> ProbeResult:
        release.wait(20)
        return ProbeResult(ok=True, detail="late", at=time.time(), duration_s=0.0)

    def at_hand() -> ProbeResult | None:
        asked.append("at hand")
        if not first.is_set():
            first.set()
            return None  # the first attempt: nothing at hand, the call hangs
        return ProbeResult(ok=True, detail="shared", at=time.time(), duration_s=0.0)

    probe = Probe(
        key="db@dc1", kind="component", site="dc1", component="db", driver="postgres",
        interval=0.2, timeout=0.2, threshold=3, run=hangs, at_hand=at_hand,
    )  # fmt: skip
    try:
        results = _collect(probe, 3)
    finally:
        release.set()
    assert all(r.timed_out and not r.ok for r in results)
    assert asked == ["at hand"], "consulted again while its own call hung"
