"""Running as a service (issue 17, item 5): systemd readiness and JSON logs.

``failback monitor`` and ``failback serve`` run as real processes with
``$NOTIFY_SOCKET`` naming a real unix datagram socket the test listens on, as systemd
does for a ``Type=notify`` unit: READY=1 must arrive only once the process really
monitors (monitor.started is in the journal) or serves (a request is answered), and
STOPPING=1 when it is stopped. With ``--log-format json`` every line it writes, on
stdout and on stderr, must parse as one JSON object with time, level, logger and
message, and no secret may appear. Needs no server: the service is driven by the
``command`` driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, failback_argv
from tests.integration.test_abort_paths import journal, write_topology
from tests.integration.test_monitor_listen import free_port

TOKEN = "service-token-0123456789"
READY_WAIT_S = 120.0
UNITS = REPO / "examples/systemd"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(READY_WAIT_S)
    yield sock
    sock.close()


def start(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock"), "FAILBACK_API_TOKEN": TOKEN,
           **(env or {})}  # fmt: skip
    return subprocess.Popen(
        failback_argv(*args),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def receive(sock: socket.socket) -> list[str]:
    """One notification, as its NAME=value lines (a missing one fails on the timeout)."""
    return sock.recv(4096).decode().splitlines()


def pings_then_stops(proc: subprocess.Popen[str], sock: socket.socket) -> None:
    """READY=1, then three WATCHDOG=1; after SIGTERM, pings until STOPPING=1; the process
    has exited when this returns (its return code is the caller's to check)."""
    try:
        assert receive(sock)[0] == "READY=1"
        assert [receive(sock) for _ in range(3)] == [["WATCHDOG=1"]] * 3
    finally:
        proc.send_signal(signal.SIGTERM)
    while (message := receive(sock)) == ["WATCHDOG=1"]:
        pass
    assert message == ["STOPPING=1"]
    proc.communicate(timeout=120)


CLEAN = (0, -signal.SIGTERM)
"""A clean stop: uvicorn re-raises the SIGTERM it handled once it has shut down (systemd
counts SIGTERM as a clean exit of the main process)."""


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in CLEAN, err
    return out, err


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line as JSON (a line that is not fails the test, naming it)."""
    lines = []
    for line in text.splitlines():
        if line.strip():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line!r}")
    for doc in lines:
        assert {"time", "level", "logger", "message"} <= set(doc), doc
    return lines


def started_events(tmp: Path) -> int:
    with contextlib.closing(journal(tmp)) as db:
        return int(
            db.execute("SELECT count(*) FROM events WHERE kind = 'monitor.started'").fetchone()[0]
        )


def test_monitor_says_ready_once_it_monitors_and_logs_json(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = write_topology(tmp_path)
    port = free_port()
    proc = start(tmp_path, "monitor", "-c", str(config), "--log-format", "json",
                 "--listen", f"127.0.0.1:{port}")  # fmt: skip
    try:
        ready = receive(notify_socket)
        assert ready[0] == "READY=1" and f"MAINPID={proc.pid}" in ready
        assert started_events(tmp_path) == 1, "READY=1 before the monitor started"
        # the API of --listen answers; its access line carries a would-be leak
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/status?leak={TOKEN}", timeout=60)
        assert answer.status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    assert receive(notify_socket) == ["STOPPING=1"]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    events = json_lines(out)
    assert [e["kind"] for e in events][:1] == ["monitor.started"]
    assert {e["logger"] for e in events} == {"failback.monitor"}
    assert events[-1]["kind"] == "monitor.stopped"
    logs = json_lines(err)
    assert any(d["logger"] == "uvicorn.access" and "/api/v1/status" in d["message"] for d in logs)
    assert any(d["logger"] == "failback.monitor" and "API and dashboard" in d["message"]
               for d in logs)  # fmt: skip
    assert TOKEN not in out + err


def test_monitor_pings_the_watchdog_from_its_event_loop(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """WatchdogSec= (WATCHDOG_USEC) asks for WATCHDOG=1 at least every half of it."""
    config = write_topology(tmp_path)
    proc = start(tmp_path, "monitor", "-c", str(config), env={"WATCHDOG_USEC": "200000"})
    pings_then_stops(proc, notify_socket)
    assert proc.returncode == 0


def test_monitor_without_log_format_writes_events_as_json_and_messages_as_text(
    tmp_path: Path,
) -> None:
    """As before --log-format existed (scripts read "API and dashboard on URL")."""
    config = write_topology(tmp_path)
    proc = start(tmp_path, "monitor", "-c", str(config), "--listen", "127.0.0.1:0")
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    out, err = stop(proc)
    assert first["kind"] == "monitor.started" and first["level"] == "info"
    assert all(json.loads(line)["kind"] for line in out.splitlines())
    assert "API and dashboard on http://127.0.0.1:" in err
    assert not any(line.startswith("{") for line in err.splitlines())


def test_monitor_text_log_format_is_for_people(tmp_path: Path) -> None:
    config = write_topology(tmp_path)
    proc = start(tmp_path, "monitor", "-c", str(config), "--log-format", "text")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    out, _ = stop(proc)
    assert " INFO    monitor.started" in first, first
    for line in (first + out).splitlines():
        assert not line.startswith("{"), line


def test_serve_says_ready_once_it_answers_and_logs_json(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    config = write_topology(tmp_path)
    port = free_port()
    proc = start(tmp_path, "serve", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                 "--log-format", "json")  # fmt: skip
    try:
        ready = receive(notify_socket)
        assert ready[0] == "READY=1"
        # no retry: READY=1 promised the port answers now
        answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/runs?leak={TOKEN}", timeout=60)
        assert answer.status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    assert receive(notify_socket) == ["STOPPING=1"]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in CLEAN, err
    assert out == ""
    logs = json_lines(err)
    loggers = {d["logger"] for d in logs}
    assert {"failback.serve", "uvicorn.error", "uvicorn.access"} <= loggers, loggers
    assert any("failback serve: http://127.0.0.1" in d["message"] for d in logs)
    assert TOKEN not in err
    assert any("/api/v1/runs?leak=" in d["message"] and "***" in d["message"] for d in logs)


def test_serve_pings_the_watchdog_while_its_health_answers(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """WatchdogSec= (WATCHDOG_USEC): WATCHDOG=1 after each answer of its own health."""
    config = write_topology(tmp_path)
    port = free_port()
    proc = start(tmp_path, "serve", "-c", str(config), "--listen", f"127.0.0.1:{port}",
                 env={"WATCHDOG_USEC": "400000"})  # fmt: skip
    pings_then_stops(proc, notify_socket)
    assert proc.returncode in CLEAN


def test_a_server_that_accepts_but_never_answers_earns_no_watchdog_ping() -> None:
    """What the ping is earned by: a real listener that accepts the health request and
    never answers does not count, one that answers 200 does (both on 127.0.0.1)."""
    import http.server
    import threading

    from failback.cli.commands_serve import answers, health_url

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or answers
        url = health_url("http", "127.0.0.1", silent.getsockname()[1])
        assert answers(url, timeout=0.5) is False
    assert health_url("http", "0.0.0.0", 80) == "http://127.0.0.1:80/api/v1/health"
    assert health_url("https", "::", 443) == "https://[::1]:443/api/v1/health"

    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/v1/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthy) as healthy:
        threading.Thread(target=healthy.serve_forever, daemon=True).start()
        try:
            port = healthy.server_address[1]
            assert answers(health_url("http", "0.0.0.0", port), timeout=30) is True
        finally:
            healthy.shutdown()


def test_without_notify_socket_serve_runs_and_logs_text_as_before(tmp_path: Path) -> None:
    config = write_topology(tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    proc = subprocess.Popen(
        failback_argv("serve", "-c", str(config), "--listen", f"127.0.0.1:{port}"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "Uvicorn running" in line:
            break
    _, err = stop(proc)
    text = "".join(seen) + err
    assert "failback serve: http://127.0.0.1" in text  # text, as before
    assert not any(line.startswith("{") for line in text.splitlines())


def test_the_example_units_verify(tmp_path: Path) -> None:
    """The units' syntax, checked by systemd itself (paths are those of the example).

    scripts/setup.sh installs systemd: a missing systemd-analyze fails here rather than
    skipping, so that CI cannot pass with the units never checked."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: run `make setup`"
    for unit in sorted(UNITS.glob("*.service")):
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(unit)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        problems = [
            line
            for line in result.stderr.splitlines()
            # the example's program and user need not exist on the test machine
            if "failback" in line and "not executable" not in line and "No such file" not in line
            and "user" not in line.lower()
        ]  # fmt: skip
        assert problems == [], result.stderr


def test_the_example_units_use_readiness_and_sandboxing() -> None:
    texts = {p.name: p.read_text() for p in UNITS.glob("*.service")}
    assert set(texts) == {"failback-monitor.service", "failback-api.service"}
    for name, text in texts.items():
        for line in ("Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "PrivateTmp=yes", "ProtectHome=yes", "User=failback",
                     "Restart=on-failure", "ReadWritePaths=/var/lib/failback",
                     "EnvironmentFile=-/etc/failback/failback.env"):  # fmt: skip
            assert line in text.splitlines(), (name, line)
        assert "--log-format json" in text, name
