"""The API cannot be used to exhaust the process or skip policy (GitHub issue 9, items 6-7).

The service is driven by the ``command`` driver (real shell commands on this machine):
its ``observe`` command can be held at a gate file, so that a test decides when an
observation ends, and its ``fence`` command prints a marker, standing for whatever a
command may print. The API is the real app served by uvicorn on a real port (in a
thread of the test process, or as ``failback serve`` in a subprocess when its memory
is measured); requests are real HTTP through httpx. Nothing is mocked.

No assertion is about time: concurrency is checked by ordering (what answered while
what else was still outstanding) and by counting observations.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from failback.engine.starter import make_plan
from failback.errors import UsageError
from failback.lab.ports import pick_ports
from failback.store import open_journal
from tests.conftest import failback_argv

pytestmark = pytest.mark.integration

TOKEN = "hardening-token-7c1e9a04"
MARKER = "PRINTED-BY-FENCE-5e0c"
ENDED = ("succeeded", "rolled-back", "aborted", "failed")
BIG = 50 * 1024 * 1024
MAX_BODY = 64 * 1024  # documented in docs/api.md


def write_topology(tmp: Path, *, approval: str = "required") -> Path:
    """app: one command component ``vip`` at dc1 (primary) and dc2.

    Each observation appends its site to observed.log; while the file ``hold`` exists
    it touches ``held`` and waits for ``release``. ``fence`` prints MARKER.
    """

    def site_block(site: str) -> str:
        observe = (
            f"echo {site} >> {tmp}/observed.log; "
            f"if [ -e {tmp}/hold ]; then touch {tmp}/held; "
            f"while [ ! -e {tmp}/release ]; do sleep 0.02; done; fi; "
            f"test -f {tmp}/{site}.up"
        )
        lines = [f"observe: {json.dumps(observe)}"]
        for action in ("fence", "promote", "unfence", "sync", "verify"):
            run = f"echo {action}@{site} >> {tmp}/effects.log"
            if action == "fence":
                run += f"; echo {MARKER}"
            lines += [f"{action}:", f"  run: {json.dumps(run)}"]
            lines.append(f'  undo: "echo undo-{action}@{site} >> {tmp}/effects.log"')
        return textwrap.indent("\n".join(lines), " " * 12)

    for site in ("dc1", "dc2"):
        (tmp / f"{site}.up").touch()
    path = tmp / "failback.yaml"
    path.write_text(f"""\
sites:
  dc1: {{}}
  dc2: {{}}
services:
  app:
    primary_site: dc1
    components:
      vip:
        driver: command
        options: {{timeout: 120s}}
        sites:
          dc1:
{site_block("dc1")}
          dc2:
{site_block("dc2")}
    policy:
      approval: {approval}
      stability_window: 100ms
      observation_window: 100ms
""")
    return path


def start_server(config: Path, token: str | None = TOKEN) -> ApiServer:
    environ = {"FAILBACK_API_TOKEN": token} if token else {}
    settings = resolve_settings(load_topology(config), listen="127.0.0.1:0", environ=environ)
    return ApiServer(settings, log_level="warning").start()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_run(client: httpx.Client, run_id: int, until: tuple[str, ...] = ENDED) -> dict[str, Any]:
    """GET the run until its status is in ``until`` and no server thread executes it."""
    deadline = time.monotonic() + 120
    while True:
        doc = client.get(f"/api/v1/runs/{run_id}").json()
        executing = client.get("/api/v1/health").json()["executing_runs"]
        if doc["run"]["status"] in until and run_id not in executing:
            return dict(doc)
        assert time.monotonic() < deadline, f"run {run_id} never reached {until}: {doc['run']}"
        time.sleep(0.1)


def start_run(client: httpx.Client, kind: str, body: dict[str, Any]) -> int:
    started = client.post(f"/api/v1/services/app/{kind}", headers=auth(), json=body)
    assert started.status_code == 202, started.text
    return int(started.json()["run_id"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_topology(tmp_path)


@pytest.fixture
def server(config: Path) -> Iterator[ApiServer]:
    srv = start_server(config)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    with httpx.Client(base_url=server.url, timeout=60, limits=limits) as c:
        yield c


def failed_over(client: httpx.Client) -> int:
    """Move app to dc2 (planned failover, no gate): a failback is then possible."""
    run_id = start_run(client, "failover", {"planned": True})
    assert wait_run(client, run_id)["run"]["status"] == "succeeded"
    return run_id


# --------------------------------------------------------------------------- bodies


def vm_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM (peak) of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def big_body(total: int = BIG) -> Iterator[bytes]:
    chunk = b"x" * (64 * 1024)
    for _ in range(total // len(chunk)):
        yield chunk


def test_big_bodies_are_refused_before_they_are_read(config: Path) -> None:
    """50 MB POSTs to ``failback serve``: 401 without the token, 413 with it, streamed
    (chunked) or declared (Content-Length); the server's peak memory grows by far less
    than one body (before: FastAPI read and parsed every body before checking anything)."""
    (port,) = pick_ports(1)
    env = {**os.environ, "FAILBACK_API_TOKEN": TOKEN}
    proc = subprocess.Popen(
        failback_argv("serve", "-c", str(config), "--listen", f"127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.get("/api/v1/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "failback serve never answered"
                    time.sleep(0.1)
            # warm up every path a request takes (status, a small authorized POST)
            assert c.get("/api/v1/status").status_code == 200
            small = c.post("/api/v1/services/app/auto-failback/disable", headers=auth(), json={})
            assert small.status_code == 200, small.text
            at_most = c.post(
                "/api/v1/services/app/auto-failback/enable",
                headers={**auth(), "Content-Type": "application/json"},
                content=b"{}" + b" " * (MAX_BODY - 2),
            )
            assert at_most.status_code == 200, at_most.text  # exactly the limit is fine
            rss_before = vm_kib(proc.pid, "VmRSS")
            peak_before = vm_kib(proc.pid, "VmHWM")
            path = "/api/v1/services/app/failover"
            sized = {"Content-Length": str(BIG), "Content-Type": "application/json"}
            answers = [
                c.post(path, content=big_body()),
                c.post(path, content=big_body(), headers=auth("not-the-token-at-all")),
                c.post(path, content=big_body(), headers=sized),
                c.post(path, content=big_body(), headers=auth()),
                c.post(path, content=big_body(), headers={**auth(), **sized}),
            ]
            peak_growth = vm_kib(proc.pid, "VmHWM") - peak_before
            rss_growth = vm_kib(proc.pid, "VmRSS") - rss_before
            print(f"server VmRSS growth {rss_growth} KiB, VmHWM growth {peak_growth} KiB")
            assert peak_growth < BIG // 1024 // 5, f"peak memory grew by {peak_growth} KiB"
            assert [a.status_code for a in answers] == [401, 403, 401, 413, 413], [
                a.text for a in answers
            ]
            assert all(a.json()["error"] and a.json()["kind"] == "ApiError" for a in answers)
            assert "64 KiB" in answers[-1].json()["error"]
            assert c.get("/api/v1/health").status_code == 200  # the server still serves
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def answer_to_headers(server: ApiServer, headers: dict[str, str]) -> str:
    """Send a POST's request line and headers (announcing a 50 MB body) and not one byte
    of its body; the status line of the answer (a timeout if the server waits for it)."""
    lines = [
        "POST /api/v1/services/app/failover HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Content-Length: {BIG}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            assert data, "the server closed the connection without an answer"
            answer += data
    return answer.split(b"\r\n")[0].decode()


def test_refusals_come_from_the_headers_alone(server: ApiServer, client: httpx.Client) -> None:
    """No token, a wrong one, or a body announced too large: answered before a byte of
    the body is sent (before: the server waited for the whole body, then refused)."""
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Basic eDp5"}, 401),
        (auth("wrong-token-of-some-length"), 403),
        (auth(), 413),
        ({**auth(), "Expect": "100-continue"}, 413),
    ):
        assert answer_to_headers(server, headers).startswith(f"HTTP/1.1 {status} "), headers
    # a wrong token on a read is refused too (rather than silently read anonymously)
    assert client.get("/api/v1/runs", headers=auth("wrong-token-of-some-length")).status_code == 403
    assert client.get("/api/v1/runs", headers=auth()).status_code == 200
    assert client.post("/api/v1/nowhere", json={}).status_code == 401  # refuse first, route after


# --------------------------------------------------------------------------- status


def test_status_requests_never_starve_health_or_abort(
    tmp_path: Path, server: ApiServer, client: httpx.Client
) -> None:
    """60 parallel GET /status while one observation is held: health and an abort answer
    while every status request is still outstanding, and the 60 share one observation
    (before: each observed in turn under one lock, in worker threads, and 40 of them
    filled the pool health and abort need)."""
    failed_over(client)
    run_id = start_run(client, "failback", {"approval": True})
    assert wait_run(client, run_id, ("waiting-approval", *ENDED))["run"]["status"] == (
        "waiting-approval"
    )
    log = tmp_path / "observed.log"
    (tmp_path / "hold").touch()
    uvicorn_state = server.server.server_state
    with ThreadPoolExecutor(max_workers=80) as pool:
        try:
            # the cache is at most a second old: ask until an observation is held
            triggers = []
            deadline = time.monotonic() + 30
            while not (tmp_path / "held").exists():
                triggers.append(pool.submit(client.get, "/api/v1/status"))
                assert time.monotonic() < deadline, "no observation started"
                time.sleep(0.1)
            observed_before = log.read_text().split().count("dc1")
            statuses = [pool.submit(client.get, "/api/v1/status") for _ in range(60)]
            deadline = time.monotonic() + 60
            while len(uvicorn_state.tasks) < 60:  # every request reached the server
                assert time.monotonic() < deadline, len(uvicorn_state.tasks)
                time.sleep(0.02)

            health = client.get("/api/v1/health", timeout=30)
            assert health.status_code == 200, health.text
            assert not any(f.done() for f in statuses), "health answered after status"
            aborted = client.post(f"/api/v1/runs/{run_id}/abort", headers=auth(), timeout=30)
            assert aborted.status_code == 200, aborted.text
            assert aborted.json()["status"] == "aborted"
            assert not any(f.done() for f in statuses), "abort answered after status"
        finally:
            (tmp_path / "release").touch()
        answers = [f.result() for f in statuses]
        triggered = [f.result() for f in triggers]
    assert all(a.status_code == 200 for a in answers + triggered)
    assert len({a.json()["observed_at"] for a in answers}) == 1  # one observation for all
    assert log.read_text().split().count("dc1") == observed_before  # and no other one
    (doc,) = answers[0].json()["services"]
    assert doc["service"] == "app" and doc["active_site"] == "dc2"


def test_plans_beyond_two_at_a_time_are_refused_with_429_not_queued(
    tmp_path: Path, client: httpx.Client
) -> None:
    """GET /services/app/plan observes the service in a worker thread: while two plans
    wait on held observations, four more are answered 429 at once (before those two end:
    refused, not queued), the two then answer 200, and planning is possible again."""
    from failback.api.routes_console import PLANS_AT_ONCE

    (tmp_path / "hold").touch()
    url = "/api/v1/services/app/plan?kind=failover&planned=true"
    with ThreadPoolExecutor(max_workers=8) as pool:
        try:
            plans = [pool.submit(client.get, url) for _ in range(PLANS_AT_ONCE + 4)]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in plans) < 4:
                assert time.monotonic() < deadline, [f.done() for f in plans]
                time.sleep(0.02)
            refused = [f.result() for f in plans if f.done()]
            assert len(refused) == 4, "more than four plans ended while observations hold"
            assert (tmp_path / "held").exists()  # the others wait on held observations
            for answer in refused:
                assert answer.status_code == 429, answer.text
                body = answer.json()
                assert body["error"] == f"{PLANS_AT_ONCE} plans are being made already"
                assert body["hint"] == "try again in a moment"
        finally:
            (tmp_path / "release").touch()
        made = [f.result() for f in plans if f.result().status_code != 429]
    assert [a.status_code for a in made] == [200] * PLANS_AT_ONCE, [a.text for a in made]
    assert made[0].json()["plan"]["steps"], made[0].json()
    (tmp_path / "hold").unlink()
    again = client.get(url)  # the semaphore was released by both
    assert again.status_code == 200, again.text


def test_metrics_and_stream_share_the_status_cache(client: httpx.Client) -> None:
    assert client.get("/api/v1/status").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "failback_component_up" in metrics.text
    one = client.get("/api/v1/services/app")
    assert one.status_code == 200 and one.json()["service"] == "app"


# --------------------------------------------------------------------------- policy


def test_approval_false_cannot_remove_a_gate_the_policy_requires(
    config: Path, client: httpx.Client
) -> None:
    """Policy ``approval: required``: ``{"approval": false}`` still stops at the gate."""
    failed_over(client)
    journal = open_journal(config.parent / ".failback")
    try:  # the starter the CLI and the monitor use too
        plan = make_plan("failback", "app", load_topology(config), journal, approval=False)
    finally:
        journal.close()
    assert "approve" in [s.id for s in plan.steps]
    run_id = start_run(client, "failback", {"approval": False})
    waiting = wait_run(client, run_id, ("waiting-approval", *ENDED))
    assert waiting["run"]["status"] == "waiting-approval", waiting["run"]
    assert waiting["waiting_gate"]["step"] == "approve"
    aborted = client.post(f"/api/v1/runs/{run_id}/abort", headers=auth(), json={})
    assert aborted.json()["status"] == "aborted", aborted.text


def test_approval_true_adds_a_gate_the_policy_does_not_require(tmp_path: Path, cli: Any) -> None:
    config = write_topology(tmp_path, approval="none")
    moved = cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json")
    assert moved.returncode == 0, moved.stderr
    journal = open_journal(tmp_path / ".failback")
    try:
        topology = load_topology(config)
        without = make_plan("failback", "app", topology, journal, approval=None)
        refused = make_plan("failback", "app", topology, journal, approval=False)
        added = make_plan("failback", "app", topology, journal, approval=True)
    finally:
        journal.close()
    assert "approve" not in [s.id for s in without.steps + refused.steps]
    assert "approve" in [s.id for s in added.steps]


# --------------------------------------------------------------------------- errors


def test_out_of_range_ids_are_404_and_errors_name_no_path(
    config: Path, client: httpx.Client
) -> None:
    huge = "99999999999999999999999"
    bodies = []
    for method, path, headers in (
        ("GET", f"/api/v1/runs/{huge}", {}),
        ("GET", f"/api/v1/runs/{huge}/report", {}),
        ("GET", f"/api/v1/runs/{huge}/events", {}),
        ("GET", "/api/v1/runs/-1", {}),
        ("GET", "/api/v1/runs/424242", {}),
        ("POST", f"/api/v1/runs/{huge}/approve", auth()),
        ("POST", f"/api/v1/runs/{huge}/abort", auth()),
        ("POST", f"/api/v1/runs/{huge}/resume", auth()),
        ("POST", "/api/v1/runs/424242/resume", auth()),
    ):
        answer = client.request(method, path, headers=headers)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"].startswith("no run"), answer.text
        bodies.append(answer.text)
    bodies.append(client.post("/api/v1/services/app/failback", headers=auth()).text)  # 409
    bodies.append(client.post("/api/v1/services/nope/failover", headers=auth()).text)  # 404
    for body in bodies:
        assert str(config.parent) not in body and ".failback" not in body, body
        assert "Traceback" not in body


def test_error_messages_lose_their_paths() -> None:
    """The rule every error body goes through (pure: the messages that carry a path come
    from places a test cannot reach without breaking a machine, e.g. a secret file)."""
    from failback.api.errors import scrub_paths

    for text, shown in (
        ("no run 5 in /var/lib/failback/state", "no run 5 in <path>"),
        ("secret file:/etc/failback/pg.pass does not exist", "secret file:<path> does not exist"),
        ("the token file ~/x/api.token is empty", "the token file <path> is empty"),
        ("exit 2 (/bin/sh: 1: nope: not found)", "exit 2 (<path>: 1: nope: not found)"),
        ("'./conf/failback.yaml' changed", "'<path>' changed"),
        ("POST /api/v1/runs/7/approve, or see /openapi.json", None),
        ("listen on 127.0.0.1:8080, http://example.org/a/b, read/write", None),
    ):
        assert scrub_paths(text) == (text if shown is None else shown)


# --------------------------------------------------------------------------- secrets


def read_frames(client: httpx.Client, headers: dict[str, str], stop: Any) -> list[Any]:
    """/api/v1/stream from the start until ``stop(kind, data)``; the frames' data."""
    frames: list[Any] = []
    deadline = time.monotonic() + 60
    with client.stream("GET", "/api/v1/stream", params={"after": 0}, headers=headers) as r:
        assert r.status_code == 200
        kind = None
        for line in r.iter_lines():
            assert time.monotonic() < deadline, f"stream never ended; saw {len(frames)}"
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind is not None:
                frames.append((kind, json.loads(line[6:])))
                if stop(kind, frames[-1][1]):
                    return frames
    return frames


def test_command_lines_and_outputs_are_shown_only_with_the_token(client: httpx.Client) -> None:
    run_id = failed_over(client)
    fence = "fence-vip-dc1"

    def step_output(doc: dict[str, Any]) -> dict[str, Any]:
        (step,) = [s for s in doc["report"]["steps"] if s["id"] == fence]
        return dict(step["output"])

    anonymous = client.get(f"/api/v1/runs/{run_id}")
    assert MARKER not in anonymous.text and "effects.log" not in anonymous.text
    output = step_output(anonymous.json())
    assert output["exit"] == 0 and not {"command", "stdout", "stderr"} & set(output)
    shown = client.get(f"/api/v1/runs/{run_id}", headers=auth())
    assert MARKER in step_output(shown.json())["stdout"]
    assert "effects.log" in step_output(shown.json())["command"]

    report = client.get(f"/api/v1/runs/{run_id}/report").text
    assert (
        MARKER not in report
        and MARKER in client.get(f"/api/v1/runs/{run_id}/report", headers=auth()).text
    )
    for path in ("/api/v1/events", f"/api/v1/runs/{run_id}/events"):
        events = client.get(path, params={"limit": 1000} if "runs" in path else {})
        assert "command.output" in events.text and MARKER not in events.text, path
        assert MARKER in client.get(path, headers=auth()).text, path

    def done(kind: str, data: Any) -> bool:
        return kind == "run" and data["run"]["id"] == run_id

    for headers, shows in (({}, False), (auth(), True)):
        text = json.dumps(read_frames(client, headers, done))
        assert "command.output" in text
        assert (MARKER in text) is shows, headers


# --------------------------------------------------------------------------- token


def test_short_tokens_are_refused_at_start_up(config: Path, cli: Any) -> None:
    short = "fifteen-chars-x"
    assert len(short) == 15
    (port,) = pick_ports(1)
    for args in (
        ("serve", "-c", str(config), "--listen", f"127.0.0.1:{port}"),
        ("monitor", "-c", str(config), "--listen", f"127.0.0.1:{port}"),
    ):
        result = cli(*args, env={"FAILBACK_API_TOKEN": short}, timeout=60)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "at least 16" in result.stderr and "Traceback" not in result.stderr
        assert short not in result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2, result.stderr  # error + hint
    with pytest.raises(UsageError):
        resolve_settings(load_topology(config), environ={"FAILBACK_API_TOKEN": short})
    settings = resolve_settings(load_topology(config), environ={"FAILBACK_API_TOKEN": short + "y"})
    assert settings.token == short + "y"


def test_a_short_token_file_is_refused_by_validate_and_serve(
    config: Path, tmp_path: Path, cli: Any
) -> None:
    (tmp_path / "api.token").write_text("short-token\n")
    text = config.read_text() + "api:\n  token_file: api.token\n"
    config.write_text(text)
    line = text.splitlines().index("  token_file: api.token") + 1
    result = cli("validate", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{config}:{line}:" in result.stderr and "at least 16" in result.stderr
    assert "short-token" not in result.stderr.replace("api.token", "")
    serve = cli("serve", "-c", str(config), env={"FAILBACK_API_TOKEN": ""}, timeout=60)
    assert serve.returncode == 2 and "at least 16" in serve.stderr, serve.stderr
    (tmp_path / "api.token").write_text("a-token-long-enough-0123\n")
    assert cli("validate", str(config)).returncode == 0
