"""Every duration and size in the topology has an upper bound the engine can handle.

A value past the bound is a ``FILE:LINE: key: message`` problem when the file is
loaded, never an ``OverflowError`` later (in ``subprocess``, a lock wait, libpq or
SQLite). The bounds themselves are checked against the real system calls they end
up in: raising one past what the engine can hand on makes these tests fail.
"""

from __future__ import annotations

import json
import math
import socket
import sqlite3
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failback.config import ConfigError, load_topology_text, parse_duration, parse_size
from failback.hosts import LocalHost
from failback.model.durations import MAX_SIZE, MAX_TIMEOUT, MAX_WINDOW

BASE = """\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
      db:
        driver: postgres
        options: {{{options}}}
        sites:
          dc1: {{port: 5432, pgdata: /srv/pg1}}
          dc2: {{port: 5433, pgdata: /srv/pg2}}
    policy: {{{policy}}}
"""


def problems(options: str = "", policy: str = "") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_topology_text(BASE.format(options=options, policy=policy), "t.yaml")
    return [p.render() for p in info.value.problems]


# --- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["8d", "7d1ms", "604801", 604801, 10**400, "9" * 400 + "s", "1" * 30 + "d", 1e300],
    ids=["8d", "7d1ms", "text", "int", "10**400", "400 digits", "30 digits", "1e300"],
)
def test_a_timeout_past_seven_days_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="at most 7d"):
        parse_duration(value, maximum=MAX_TIMEOUT)  # type: ignore[arg-type]


def test_the_bounds_themselves_are_accepted() -> None:
    assert parse_duration("7d", maximum=MAX_TIMEOUT) == MAX_TIMEOUT
    assert parse_duration("30d") == MAX_WINDOW
    assert parse_duration("29d23h59m59s1000ms") == MAX_WINDOW
    assert parse_size("1024TB") == MAX_SIZE == 2**50
    assert parse_size(MAX_SIZE) == MAX_SIZE


@pytest.mark.parametrize(
    "value",
    ["1025TB", "9999999999999999999999MB", 2**63, 10**400, "9" * 400 + "kB", 1e300],
    ids=["1025TB", "22 digits MB", "2**63", "10**400", "400 digits kB", "1e300"],
)
def test_a_size_past_1024tb_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="at most 1024TB"):
        parse_size(value)  # type: ignore[arg-type]


def test_sizes_are_exact() -> None:
    assert parse_size("1.5GB") == 1536 * 1024**2
    assert parse_size("0.1kB") == 102
    assert parse_size("1023.999999999TB") == round(1023.999999999 * 1024**4)


durations = st.one_of(
    st.integers(min_value=0, max_value=10**30),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    st.lists(
        st.tuples(
            st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,5})?", fullmatch=True),
            st.sampled_from(["ms", "s", "m", "h", "d", "D", "S"]),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda parts: "".join(n + u for n, u in parts)),
)


@settings(max_examples=400, deadline=None)
@given(durations, st.sampled_from([MAX_TIMEOUT, MAX_WINDOW]))
def test_a_duration_is_bounded_or_refused(value: object, maximum: float) -> None:
    """Whatever a person writes, the result fits the bound or is a ValueError."""
    try:
        seconds = parse_duration(value, maximum=maximum)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "at most" in str(exc)
        return
    assert math.isfinite(seconds) and 0 <= seconds <= maximum


sizes = st.one_of(
    st.integers(min_value=0, max_value=10**30),
    st.tuples(
        st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,5})?", fullmatch=True),
        st.sampled_from(["", "B", "kB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "tb"]),
    ).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(sizes)
def test_a_size_is_bounded_or_refused(value: object) -> None:
    try:
        size = parse_size(value)  # type: ignore[arg-type]
    except ValueError as exc:
        assert "at most" in str(exc)
        return
    assert isinstance(size, int) and 0 <= size <= MAX_SIZE


# --- the loader: FILE:LINE problems -------------------------------------------------------


def test_overflowing_values_are_file_line_problems() -> None:
    found = problems(
        options='max_lag_bytes: "9999999999999999999999MB", catchup_timeout: 30d,'
        " connect_timeout: 100000000000000000000000000",
        policy="stability_window: 1e300, hold_down: 31d, bake_time: 1000000000000d",
    )
    assert len(found) == 6, found
    key = "t.yaml:{}: services.app.{}: must be at most {}"
    assert key.format(10, "components.db.options.max_lag_bytes", "1024TB") in "\n".join(found)
    for option in ("catchup_timeout", "connect_timeout"):
        assert key.format(10, f"components.db.options.{option}", "7d") in "\n".join(found)
    for window in ("stability_window", "hold_down", "bake_time"):
        assert key.format(14, f"policy.{window}", "30d") in "\n".join(found)


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        ("detection: {failure_threshold: 10000000000000000000000}", "detection.failure_threshold"),
        ("detection: {interval: 8d}", "detection.interval"),
        ("max_failbacks_per_day: 1001", "max_failbacks_per_day"),
        ("traffic_gate: {max_response_ms: 99999999999999999999}", "traffic_gate.max_response_ms"),
        ("traffic_gate: {min_requests: 99999999999999999999}", "traffic_gate.min_requests"),
        ("traffic_gate: {prometheus: {url: 'http://p', query: up, timeout: 1e300}}", "timeout"),
        ("traffic_gate: {prometheus: {url: 'http://p', query: up, max: .nan}}", "max"),
    ],
)
def test_other_numbers_the_engine_uses_are_bounded(policy: str, key: str) -> None:
    found = problems(policy=policy)
    assert len(found) == 1 and f"{key}: " in found[0], found


@pytest.mark.parametrize("key", ["interval", "recheck_interval"])
def test_observing_more_often_than_twenty_times_a_second_is_refused(key: str) -> None:
    """``1ms`` written for ``1s`` would hammer the servers the monitor protects."""
    found = problems(policy=f"detection: {{{key}: 1ms}}")
    assert len(found) == 1 and f"detection.{key}: must be at least 50ms" in found[0], found
    loaded = load_topology_text(
        BASE.format(options="", policy=f"detection: {{{key}: 50ms}}"), "t.yaml"
    )
    assert getattr(loaded.services["app"].policy.detection, key) == 0.05


# --- the bounds fit what the engine hands them to -----------------------------------------


def test_the_longest_timeout_fits_a_real_command_wait() -> None:
    """subprocess waits with poll(2) in int milliseconds: 24.8 days at most."""
    result = LocalHost().run(["true"], timeout=MAX_TIMEOUT)
    assert result.ok
    result = LocalHost().run_shell("true", timeout=MAX_TIMEOUT)
    assert result.ok


def test_the_longest_waits_fit_locks_sockets_and_clocks() -> None:
    # a stability gate may wait four windows; a lock wait past time_t overflows
    lock = threading.Lock()
    lock.acquire()
    threading.Timer(0.05, lock.release).start()
    assert lock.acquire(timeout=max(MAX_WINDOW * 4, MAX_WINDOW + 60))
    with socket.socket() as sock:
        sock.settimeout(MAX_TIMEOUT)
    time.localtime(time.time() + MAX_WINDOW * 4)  # undo_until, shown by status
    assert round(MAX_TIMEOUT) < 2**31  # libpq reads connect_timeout as a C int


def test_the_largest_size_fits_sqlite_and_json() -> None:
    with sqlite3.connect(":memory:") as db:
        (stored,) = db.execute("SELECT ?", (MAX_SIZE,)).fetchone()
    assert stored == MAX_SIZE
    assert json.loads(json.dumps(float(MAX_SIZE))) == MAX_SIZE  # exact even as a double
