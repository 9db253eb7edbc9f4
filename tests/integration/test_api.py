"""The HTTP API against a real lab (GitHub issue 6).

Real PostgreSQL, HAProxy and PgBouncer processes started by ``failback.lab.lab_up``;
the API is the real app served by uvicorn on a real port of 127.0.0.1 (in a thread of
the test process, or as the ``failback serve`` command in a subprocess), and every
request is real HTTP through httpx. Nothing is mocked.

Waits are bounded polls of the API itself; no assertion is about time.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from failback.lab import lab_break, lab_repair
from failback.lab.ports import pick_ports
from failback.store import open_journal
from tests.conftest import failback_argv
from tests.integration.labfixtures import Lab, lab_base, new_lab

pytestmark = pytest.mark.integration

TOKEN = "api-test-token-5b1d2c"
SERVICE = "app"
ENDED = ("succeeded", "rolled-back", "aborted", "failed")

MUTATING = [
    ("/api/v1/services/app/failover", {}),
    ("/api/v1/services/app/failback", {}),
    ("/api/v1/runs/1/approve", {}),
    ("/api/v1/runs/1/abort", {}),
    ("/api/v1/runs/1/resume", None),
    ("/api/v1/services/app/auto-failback/enable", {}),
    ("/api/v1/services/app/auto-failback/disable", {}),
]

TOKEN_READS = {"/api/v1/runs/{run_id}/diverged"}
"""Reads that need the token: they return clients' data (rows a failover left behind)."""

METRICS = [
    "failback_component_up",
    "failback_component_role",
    "failback_replication_lag_bytes",
    "failback_replication_lag_seconds",
    "failback_traffic_weight",
    "failback_runs",
    "failback_last_failover_rto_seconds",
    "failback_last_failback_write_unavailability_seconds",
    "failback_monitor_check_latency_seconds",
]


# --------------------------------------------------------------------------- helpers


def start_server(lab: Lab, token: str | None = TOKEN, log_level: str = "warning") -> ApiServer:
    """The real app, served by uvicorn on a free port of 127.0.0.1."""
    environ = {"FAILBACK_API_TOKEN": token} if token else {}
    settings = resolve_settings(load_topology(lab.config), listen="127.0.0.1:0", environ=environ)
    return ApiServer(settings, log_level=log_level).start()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_run(client: httpx.Client, run_id: int, until: tuple[str, ...] = ENDED) -> dict[str, Any]:
    """Poll GET /api/v1/runs/{id} until its status is one of ``until`` and no thread of
    the server executes it any more (its lock and report are then written); bounded."""
    deadline = time.monotonic() + 180
    while True:
        doc = client.get(f"/api/v1/runs/{run_id}").json()
        executing = client.get("/api/v1/health").json()["executing_runs"]
        if doc["run"]["status"] in until and run_id not in executing:
            return dict(doc)
        assert time.monotonic() < deadline, f"run {run_id} never reached {until}: {doc['run']}"
        time.sleep(0.2)


def fresh_status(client: httpx.Client) -> dict[str, Any]:
    """GET /api/v1/status until it serves an observation that began after this call (the
    API serves a shared observation up to a second old); bounded."""
    since = time.time()
    deadline = time.monotonic() + 60
    while True:
        response = client.get("/api/v1/status")
        assert response.status_code == 200, response.text
        if response.json()["observed_at"] >= since:
            return dict(response.json())
        assert time.monotonic() < deadline, "no new observation"
        time.sleep(0.1)


def service_doc(client: httpx.Client) -> dict[str, Any]:
    """The service's status, observed after everything the test did so far."""
    (doc,) = [s for s in fresh_status(client)["services"] if s["service"] == SERVICE]
    return dict(doc)


def component(doc: dict[str, Any], name: str, site: str) -> dict[str, Any]:
    (found,) = [c for c in doc["components"] if c["component"] == name and c["site"] == site]
    return dict(found)


def read_stream(client: httpx.Client, params: dict[str, Any], stop: Any) -> list[tuple[str, Any]]:
    """Read /api/v1/stream until ``stop(kind, data)`` is true (bounded); the frames seen."""
    frames: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 180
    with client.stream("GET", "/api/v1/stream", params=params, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind, data = None, []
        for line in response.iter_lines():
            assert time.monotonic() < deadline, f"stream never ended; saw {len(frames)} frames"
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and kind is not None:
                frames.append((kind, json.loads("\n".join(data))))
                if stop(kind, frames[-1][1]):
                    return frames
                kind, data = None, []
    return frames


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """One lab for the module (dc1 primary, dc2 standby); the flow test moves it and
    brings it home again."""
    with lab_base("fb-api-") as root:
        yield new_lab(root)


@pytest.fixture(scope="module")
def server(lab: Lab) -> Iterator[ApiServer]:
    srv = start_server(lab, log_level="info")  # access logs too: they must hold no secret
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ApiServer, captured_logs: list[str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def captured_logs(server: ApiServer) -> Iterator[list[str]]:
    """Every log record of failback's API and uvicorn from now on, to look for secrets in
    (attached once the server started: uvicorn's logging set-up replaces handlers)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    logging.getLogger("failback").setLevel(logging.INFO)
    names = ["failback", "uvicorn", "uvicorn.error", "uvicorn.access"]
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield lines
    for name in names:
        logging.getLogger(name).removeHandler(handler)


# --------------------------------------------------------------------------- tests


def test_openapi_document_is_served_and_valid(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3."), doc["openapi"]
    assert doc["info"]["title"] == "failback"
    paths = doc["paths"]
    for path in (
        "/api/v1/status",
        "/api/v1/topology",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/runs/{run_id}/report",
        "/api/v1/runs/{run_id}/diverged",
        "/api/v1/stream",
        "/api/v1/services/{service}/failover",
        "/api/v1/services/{service}/failback",
        "/api/v1/runs/{run_id}/approve",
        "/api/v1/runs/{run_id}/abort",
        "/api/v1/runs/{run_id}/resume",
        "/api/v1/services/{service}/auto-failback/enable",
        "/api/v1/services/{service}/auto-failback/disable",
        "/api/v1/services/{service}/drill",
        "/api/v1/drills",
        "/api/v1/services/{service}/history",
        "/api/v1/services/{service}/plan",
        "/metrics",
    ):
        assert path in paths, f"{path} missing from the OpenAPI document"
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    for path, operations in paths.items():
        for method, op in operations.items():
            assert method in ("get", "post", "delete"), (path, method)
            assert op.get("responses"), (path, method)
            parameters = [p["name"] for p in op.get("parameters", [])]
            for name in ("service", "run_id"):
                if "{" + name + "}" in path:
                    assert name in parameters, (path, method, parameters)
            if method in ("post", "delete") or path in TOKEN_READS:
                assert op.get("security"), f"{method} {path} is not marked as needing the token"
            else:
                assert not op.get("security"), f"GET {path} should need no token"

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            assert part in target, f"dangling $ref {ref}"
            target = target[part]


def test_mutating_endpoints_need_the_token(client: httpx.Client) -> None:
    for path, body in MUTATING:
        missing = client.post(path, json=body)
        assert missing.status_code == 401, (path, missing.text)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"] and missing.json()["hint"]
        basic = client.post(path, json=body, headers={"Authorization": "Basic " + TOKEN})
        assert basic.status_code == 401, (path, basic.text)
        wrong = client.post(path, json=body, headers=auth(TOKEN + "x"))
        assert wrong.status_code == 403, (path, wrong.text)
        assert wrong.json()["error"] == "wrong API token"
        assert TOKEN not in wrong.text


def test_a_server_without_token_is_read_only(lab: Lab) -> None:
    srv = start_server(lab, token=None)
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/api/v1/health").json()["read_only"] is True
            refused = c.post("/api/v1/services/app/failback", headers=auth())
            assert refused.status_code == 403
            assert "read-only" in refused.json()["error"]
    finally:
        srv.stop()


def test_unknown_things_are_404_and_refusals_409(client: httpx.Client) -> None:
    missing = client.post("/api/v1/services/nope/failback", headers=auth())
    assert missing.status_code == 404
    assert "app" in missing.json()["hint"]
    assert client.get("/api/v1/runs/99999").status_code == 404
    assert client.post("/api/v1/runs/99999/approve", headers=auth()).status_code == 404
    assert client.get("/api/v1/runs", params={"service": "nope"}).status_code == 404
    home = client.post("/api/v1/services/app/failback", headers=auth(), json={})
    assert home.status_code == 409, home.text
    assert home.json()["kind"] == "PlanRefused"
    assert home.json()["error"] and home.json()["hint"]
    healthy = client.post("/api/v1/services/app/failover", headers=auth(), json={})
    assert healthy.status_code == 409, healthy.text
    bad = client.post("/api/v1/services/app/failover", headers=auth(), json={"planned": "x"})
    assert bad.status_code == 422 and bad.json()["error"].startswith("bad request")


def test_auto_failback_switch_is_journaled(lab: Lab, client: httpx.Client) -> None:
    off = client.post(
        "/api/v1/services/app/auto-failback/disable",
        headers=auth(),
        json={"reason": "db maintenance", "by": "alice"},
    )
    assert off.status_code == 200, off.text
    state = service_doc(client)["auto_failback"]
    assert state["enabled"] is False and state["effective"] is False
    assert (state["reason"], state["by"], state["policy"]) == ("db maintenance", "alice", "manual")
    journal = open_journal(lab.dir / "state")  # where the monitor reads the switch
    try:
        switch = (journal.service_state(SERVICE) or {})["auto_failback"]
    finally:
        journal.close()
    assert (switch["enabled"], switch["reason"], switch["by"]) == (False, "db maintenance", "alice")
    kinds = [e["kind"] for e in client.get("/api/v1/events").json()["events"]]
    assert "auto_failback.disabled" in kinds
    on = client.post("/api/v1/services/app/auto-failback/enable", headers=auth(), json={})
    assert on.status_code == 200 and on.json()["auto_failback"]["enabled"] is True


def test_a_drill_through_the_api(lab: Lab, client: httpx.Client) -> None:
    """POST starts a drill (its own lock: the service stays free); it is listed under
    /drills and the service's status shows it; refusals are 409 / 422 and create no run."""
    runs_before = len(client.get("/api/v1/runs", params={"limit": 1000}).json()["runs"])
    active = client.post("/api/v1/services/app/drill", headers=auth(), json={"site": "dc1"})
    assert active.status_code == 409 and active.json()["kind"] == "PlanRefused", active.text
    bad = client.post("/api/v1/services/app/drill", headers=auth(), json={"keep_for": "soon"})
    assert bad.status_code == 422 and "keep-for" in bad.json()["error"], bad.text
    assert len(client.get("/api/v1/runs", params={"limit": 1000}).json()["runs"]) == runs_before
    started = client.post("/api/v1/services/app/drill", headers=auth(), json={})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    done = wait_run(client, run_id)
    assert done["run"]["status"] == "succeeded", done["run"]
    listed = client.get("/api/v1/drills", params={"service": "app"}).json()["drills"]
    assert listed[0]["id"] == run_id and listed[0]["site"] == "dc2"
    assert listed[0]["rto_s"] and listed[0]["rto_s"] > 0
    doc = fresh_status(client)["services"][0]
    assert doc["drill"]["last"]["id"] == run_id and doc["drill"]["last"]["status"] == "succeeded"
    assert doc["current_run"] is None
    assert not Path(f"{lab.info.sites['dc2'].pgdata}.failback-drill-{run_id}").exists()


def test_failover_and_failback_through_the_api(lab: Lab, client: httpx.Client) -> None:
    # dc1 fails; the failover is started through the API and the status reflects it
    lab_break(lab.dir, "dc1", "db")
    started = client.post("/api/v1/services/app/failover", headers=auth(), json={})
    assert started.status_code == 202, started.text
    failover_id = started.json()["run_id"]
    done = wait_run(client, failover_id)
    assert done["run"]["status"] == "succeeded", done["run"]
    assert done["run"]["measurements"]["rto_s"] > 0
    doc = service_doc(client)
    assert doc["active_site"] == "dc2" and doc["degraded"] is True
    assert doc["needs_resync"] == ["dc1"]
    assert doc["current_run"] is None
    assert component(doc, "db", "dc2")["role"] == "primary"
    assert doc["traffic"]["router"]["dc2"]["share"] == 1.0
    assert doc["traffic"]["router"]["dc1"]["share"] == 0.0

    # dc1 comes back as a stale primary, fenced
    lab_repair(lab.dir, "dc1", "db")
    assert component(service_doc(client), "db", "dc1")["role"] == "stale-primary"

    # the failback is started through the API; its progress is read on the event stream
    last_event = max((e["id"] for e in client.get("/api/v1/events").json()["events"]), default=0)
    started = client.post("/api/v1/services/app/failback", headers=auth(), json={})
    assert started.status_code == 202, started.text
    failback_id = started.json()["run_id"]
    again = client.post("/api/v1/services/app/failback", headers=auth(), json={})
    assert again.status_code == 409, again.text  # one run per service

    seen = {"ended": False, "last_event": False}

    def finished(kind: str, data: Any) -> bool:
        # the run's final frame and its last journal event: the stream sends both, in
        # whichever order the run's status and its event were read
        if kind == "run" and data["run"]["id"] == failback_id:
            seen["ended"] = data["run"]["status"] in ENDED
        if kind == "journal" and data["run_id"] == failback_id:
            seen["last_event"] = data["kind"] in {f"failback.{status}" for status in ENDED}
        return seen["ended"] and seen["last_event"]

    frames = read_stream(client, {"after": last_event}, finished)
    kinds = {kind for kind, _ in frames}
    assert {"run", "status", "journal"} <= kinds, kinds
    final = [d for k, d in frames if k == "run" and d["run"]["id"] == failback_id][-1]
    assert final["run"]["status"] == "succeeded", final["run"]
    assert all(s["status"] in ("done", "skipped") for s in final["report"]["steps"])
    journal = [d["kind"] for k, d in frames if k == "journal" and d["run_id"] == failback_id]
    assert journal[0] == "failback.created" and journal[-1] == "failback.succeeded", journal
    assert final["run"]["measurements"]["write_unavailability_s"] > 0

    # home again, as the API shows it and as the CLI (another process) sees it
    doc = service_doc(client)
    assert (doc["active_site"], doc["degraded"], doc["needs_resync"]) == ("dc1", False, [])
    assert component(doc, "db", "dc1")["role"] == "primary"
    assert component(doc, "db", "dc2")["role"] == "standby"
    lab.wait_home_end_state()
    runs = client.get("/api/v1/runs").json()["runs"]
    assert [(r["id"], r["kind"], r["status"]) for r in runs[:2]] == [
        (failback_id, "failback", "succeeded"),
        (failover_id, "failover", "succeeded"),
    ]
    report = client.get(f"/api/v1/runs/{failback_id}/report").json()
    assert report["status"] == "succeeded" and report["steps"]
    events = client.get(f"/api/v1/runs/{failback_id}/events").json()["events"]
    assert events[-1]["kind"] == "failback.succeeded"

    # the metrics carry what the runs measured
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    runs_by = {
        (s.labels["kind"], s.labels["outcome"]): s.value
        for s in families["failback_runs"].samples
        if s.name == "failback_runs_total"
    }
    assert runs_by[("failover", "succeeded")] >= 1 and runs_by[("failback", "succeeded")] >= 1
    (rto,) = families["failback_last_failover_rto_seconds"].samples
    assert rto.value == done["run"]["measurements"]["rto_s"]
    (unavailable,) = families["failback_last_failback_write_unavailability_seconds"].samples
    assert unavailable.value == final["run"]["measurements"]["write_unavailability_s"]


def test_a_failback_with_approval_is_aborted_then_approved_through_the_api(
    lab: Lab, client: httpx.Client
) -> None:
    started = client.post("/api/v1/services/app/failover", headers=auth(), json={"planned": True})
    assert started.status_code == 202, started.text
    assert wait_run(client, started.json()["run_id"])["run"]["status"] == "succeeded"

    # a failback waiting at its gate can be aborted: undone, the service stays at dc2
    started = client.post("/api/v1/services/app/failback", headers=auth(), json={"approval": True})
    assert started.status_code == 202, started.text
    aborted_id = started.json()["run_id"]
    waiting = wait_run(client, aborted_id, until=("waiting-approval", *ENDED))
    assert waiting["run"]["status"] == "waiting-approval", waiting["run"]
    aborted = client.post(f"/api/v1/runs/{aborted_id}/abort", headers=auth(), json={})
    assert aborted.status_code == 200, aborted.text
    assert aborted.json()["status"] == "aborted"
    doc = service_doc(client)
    assert (doc["active_site"], doc["current_run"]) == ("dc2", None)
    assert component(doc, "db", "dc2")["role"] == "primary"
    assert client.post(f"/api/v1/runs/{aborted_id}/abort", headers=auth()).status_code == 409

    # the next one is approved and brings the service home
    started = client.post("/api/v1/services/app/failback", headers=auth(), json={"approval": True})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    waiting = wait_run(client, run_id, until=("waiting-approval", *ENDED))
    assert waiting["run"]["status"] == "waiting-approval", waiting["run"]
    assert waiting["waiting_gate"]["step"] and waiting["waiting_gate"]["question"]
    resume = client.post(f"/api/v1/runs/{run_id}/resume", headers=auth())
    assert resume.status_code == 409  # a gate is approved, not resumed
    approved = client.post(f"/api/v1/runs/{run_id}/approve", headers=auth(), json={"by": "bob"})
    assert approved.status_code == 202, approved.text
    assert approved.json()["approved"] == waiting["waiting_gate"]["step"]
    assert wait_run(client, run_id)["run"]["status"] == "succeeded"
    again = client.post(f"/api/v1/runs/{run_id}/approve", headers=auth())
    assert again.status_code == 409
    events = client.get(f"/api/v1/runs/{run_id}/events").json()["events"]
    assert any(e["kind"] == "gate.approved" and "bob" in e["message"] for e in events)
    lab.wait_home_end_state()


def test_metrics_parse_and_carry_every_family(lab: Lab, client: httpx.Client) -> None:
    journal = open_journal(lab.dir / "state")
    try:  # what the monitor journals after checking a probe (failback.observe.probes)
        history = [{"at": time.time(), "ok": True, "s": 0.0123, "detail": "primary"}]
        journal.save_health(SERVICE, {"db@dc1": {"site": "dc1", "history": history}})
    finally:
        journal.close()
    fresh_status(client)  # an observation that saw the record, shared with /metrics
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    missing = [name for name in METRICS if name not in families]
    assert not missing, f"missing metric families: {missing}"
    up = {
        (s.labels["component"], s.labels["site"]): s.value
        for s in families["failback_component_up"].samples
    }
    assert up[("db", "dc1")] == 1.0 and up[("db", "dc2")] == 1.0
    roles = {
        (s.labels["component"], s.labels["site"]): s.labels["role"]
        for s in families["failback_component_role"].samples
    }
    assert roles[("db", "dc1")] == "primary" and roles[("db", "dc2")] == "standby"
    lag = {s.labels["site"]: s.value for s in families["failback_replication_lag_bytes"].samples}
    assert lag["dc2"] >= 0
    weights = {
        s.labels["site"]: s.value
        for s in families["failback_traffic_weight"].samples
        if s.labels["component"] == "router"
    }
    assert weights["dc1"] > 0 and weights["dc2"] == 0
    (latency,) = families["failback_monitor_check_latency_seconds"].samples
    assert (latency.labels["probe"], latency.labels["site"], latency.value) == (
        "db@dc1",
        "dc1",
        0.0123,
    )


def test_secrets_never_appear_in_responses_or_logs(
    lab: Lab, client: httpx.Client, captured_logs: list[str]
) -> None:
    client.post("/api/v1/services/app/failback", headers=auth(), json={})  # 409, logged
    client.post("/api/v1/services/app/failback", headers=auth("guess"), json={})  # 403
    secrets = [TOKEN, *(lab.secret(name) for name in ("failback", "replicator", "app"))]
    texts = [
        client.get(path).text
        for path in (
            "/api/v1/status",
            "/api/v1/topology",
            "/api/v1/runs",
            "/api/v1/events",
            "/metrics",
            "/openapi.json",
            "/",
        )
    ]
    for run in client.get("/api/v1/runs").json()["runs"]:
        texts.append(client.get(f"/api/v1/runs/{run['id']}").text)
    assert any("POST /api/v1/services/app/failback" in line for line in captured_logs)
    texts.append("\n".join(captured_logs))
    for secret in secrets:
        assert len(secret) >= 8
        for text in texts:
            assert secret not in text
    topology = client.get("/api/v1/topology").json()
    assert set(topology["services"]["app"]["components"]) >= {"db", "router"}
    assert "options" not in json.dumps(topology)


def test_settings_default_to_loopback(lab: Lab) -> None:
    settings = resolve_settings(load_topology(lab.config), environ={})
    assert (settings.host, settings.port, settings.scheme) == ("127.0.0.1", 8080, "http")
    assert settings.token is None and settings.loopback_only
    assert TOKEN not in repr(resolve_settings(load_topology(lab.config), environ=auth()))


def test_serve_command_with_tls_and_token_file(lab: Lab, tmp_path: Path) -> None:
    """``failback serve`` as a user runs it: TLS from a self-signed certificate, the
    token from ``api.token_file`` named in the topology."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    (port,) = pick_ports(1)
    config = tmp_path / "failback.yaml"
    config.write_text(
        lab.config.read_text() + f"api:\n  listen: 127.0.0.1:{port}\n  token_file: api.token\n"
        f"  tls_cert: {cert}\n  tls_key: {key}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FAILBACK_API_TOKEN"}
    proc = subprocess.Popen(
        failback_argv("serve", "-c", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        tls = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=tls, timeout=30) as c:
            while True:
                try:
                    health = c.get("/api/v1/health")
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "failback serve never answered"
                    time.sleep(0.1)
            assert health.json()["read_only"] is False
            assert c.post("/api/v1/services/app/failback", headers=auth("x")).status_code == 403
            assert c.post("/api/v1/services/app/failback", headers=auth()).status_code == 409
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert TOKEN not in out + err
    assert f"https://127.0.0.1:{port}/" in err


def test_serve_command_refuses_bad_options(lab: Lab, tmp_path: Path, cli: Any) -> None:
    bad = cli("serve", "-c", str(lab.config), "--listen", "localhost")
    assert bad.returncode == 2, bad.stderr
    assert "HOST:PORT" in bad.stderr and "Traceback" not in bad.stderr
    half = cli("serve", "-c", str(lab.config), "--tls-cert", str(lab.config))
    assert half.returncode == 2 and "key" in half.stderr, half.stderr
    config = tmp_path / "failback.yaml"
    config.write_text(lab.config.read_text() + "api:\n  token_file: /nonexistent/token\n")
    missing = cli("serve", "-c", str(config), env={"FAILBACK_API_TOKEN": ""})
    assert missing.returncode == 2, missing.stderr
    assert "does not exist" in missing.stderr


def test_api_section_mistakes_point_at_the_file(lab: Lab, tmp_path: Path, cli: Any) -> None:
    for section, words in (
        ("api:\n  tls_cert: cert.pem\n", "tls_key"),
        ("api:\n  listen: everywhere\n", "HOST:PORT"),
        ("api:\n  token: inline-secret\n", "token"),
    ):
        config = tmp_path / "failback.yaml"
        config.write_text(lab.config.read_text() + section)
        result = cli("validate", str(config))
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"{config}:" in result.stderr and words in result.stderr, result.stderr
