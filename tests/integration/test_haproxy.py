"""The haproxy driver against a real HAProxy started by the test.

Each test gets its own HAProxy (foreground child, ``-db``) with an admin-level
and a user-level stats socket, a TCP frontend and backend ``pg_write`` whose two
servers ``dc1``/``dc2`` are tiny TCP servers started here that greet each client
with their own name, so a test can see which server a connection reached.
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failback.drivers.haproxy import (
    HaproxyError,
    HaproxyRouter,
    HaproxyUnreachable,
    MultipleWriteTargets,
    UnknownBackend,
    UnknownServer,
)
from failback.drivers.haproxy.facts import observe_haproxy_at_hand, observe_haproxy_component
from failback.drivers.haproxy.server_state import (
    admin_state_from_mask,
    parse_servers_state,
    parse_stat_csv,
)
from failback.drivers.kept import Kept, keeping
from failback.hosts import LocalHost
from failback.lab.ports import pick_ports

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


class _Greeter(socketserver.BaseRequestHandler):
    """Says its server's name, then echoes until the client goes away."""

    def handle(self) -> None:
        name: str = self.server.site_name  # type: ignore[attr-defined]
        self.request.sendall(f"{name}\n".encode())
        while True:
            try:
                data = self.request.recv(1024)
            except OSError:
                return
            if not data:
                return
            self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Haproxy:
    router: HaproxyRouter
    frontend_port: int
    user_socket: str
    directory: Path

    def connect(self) -> socket.socket:
        """A client connection through the frontend, greeting already checked non-empty."""
        sock = socket.create_connection(("127.0.0.1", self.frontend_port), timeout=3)
        return sock

    def reached(self) -> str:
        """Which server a fresh client connection reaches ('' when none answers)."""
        with self.connect() as sock:
            return _greeting(sock)


def _greeting(sock: socket.socket) -> str:
    try:
        return sock.recv(64).decode().strip()
    except (ConnectionResetError, TimeoutError):
        return ""


def _start_greeters(ports: list[int], names: list[str]) -> list[_Server]:
    servers = []
    for port, name in zip(ports, names, strict=True):
        srv = _Server(("127.0.0.1", port), _Greeter)
        srv.site_name = name  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
    return servers


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[Haproxy]:
    fe, p1, p2 = pick_ports(3)
    greeters = _start_greeters([p1, p2], ["dc1", "dc2"])
    admin_sock = tmp_path / "admin.sock"
    user_sock = tmp_path / "user.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"""global
    stats socket {admin_sock} level admin mode 600
    stats socket {user_sock} level user mode 600
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
frontend write
    bind 127.0.0.1:{fe}
    default_backend pg_write
backend pg_write
    default-server on-marked-down shutdown-sessions
    server dc1 127.0.0.1:{p1}
    server dc2 127.0.0.1:{p2} disabled
backend other
    server x1 127.0.0.1:{p1}
"""
    )
    proc = subprocess.Popen(
        [HAPROXY, "-f", str(cfg), "-db"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    router = HaproxyRouter(str(admin_sock), timeout=3)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                router.backends()
                break
            except HaproxyUnreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"haproxy did not start: {out}")
                time.sleep(0.02)
        yield Haproxy(router, fe, str(user_sock), tmp_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        for srv in greeters:
            srv.shutdown()
            srv.server_close()


pytestmark = pytest.mark.integration


def test_initial_state_and_write_target(haproxy: Haproxy) -> None:
    r = haproxy.router
    states = r.server_states("pg_write")
    assert list(states) == ["dc1", "dc2"]
    assert states["dc1"].admin_state == "ready"
    assert states["dc1"].op_state == "running"
    assert states["dc2"].admin_state == "maint"
    assert r.active_servers("pg_write") == ["dc1"]
    assert r.write_target("pg_write") == "dc1"
    assert haproxy.reached() == "dc1"


def test_route_to_switches_the_server_a_client_reaches(haproxy: Haproxy) -> None:
    r = haproxy.router
    r.route_to("pg_write", "dc2")  # dc2 was "disabled" in the config
    assert r.write_target("pg_write") == "dc2"
    assert r.server_state("pg_write", "dc1").admin_state == "maint"
    assert [haproxy.reached() for _ in range(5)] == ["dc2"] * 5
    r.route_to("pg_write", "dc2")  # idempotent
    assert r.write_target("pg_write") == "dc2"
    r.route_to("pg_write", "dc1")
    assert [haproxy.reached() for _ in range(5)] == ["dc1"] * 5
    assert r.server_state("pg_write", "dc2").admin_state == "maint"


def test_route_to_closes_sessions_on_the_other_server(haproxy: Haproxy) -> None:
    with haproxy.connect() as old:
        assert _greeting(old) == "dc1"
        haproxy.router.route_to("pg_write", "dc2")
        old.settimeout(2)
        assert old.recv(64) == b""  # the session to the old write target was cut
    assert haproxy.reached() == "dc2"


def test_fence_closes_existing_sessions_and_refuses_new_ones(haproxy: Haproxy) -> None:
    r = haproxy.router
    with haproxy.connect() as client:
        assert _greeting(client) == "dc1"
        client.sendall(b"ping")
        assert client.recv(64) == b"ping"
        assert r.server_state("pg_write", "dc1").current_sessions == 1
        r.fence("pg_write", "dc1")
        client.settimeout(2)
        assert client.recv(64) == b""
    r.fence("pg_write", "dc1")  # idempotent
    assert r.write_target("pg_write") is None
    assert r.server_state("pg_write", "dc1").current_sessions == 0
    assert haproxy.reached() == ""  # no server: HAProxy closes the client at once


def test_drain_keeps_existing_sessions(haproxy: Haproxy) -> None:
    r = haproxy.router
    with haproxy.connect() as client:
        assert _greeting(client) == "dc1"
        r.set_state("pg_write", "dc2", "ready")
        r.drain("pg_write", "dc1")
        assert r.server_state("pg_write", "dc1").admin_state == "drain"
        client.sendall(b"still here")
        assert client.recv(64) == b"still here"
        assert haproxy.reached() == "dc2"
        assert r.write_target("pg_write") == "dc2"


def test_two_ready_servers_are_a_two_primary_risk(haproxy: Haproxy) -> None:
    r = haproxy.router
    r.set_state("pg_write", "dc2", "ready")
    assert r.active_servers("pg_write") == ["dc1", "dc2"]
    with pytest.raises(MultipleWriteTargets, match="dc1, dc2"):
        r.write_target("pg_write")


def test_weights(haproxy: Haproxy) -> None:
    r = haproxy.router
    r.set_weight("pg_write", "dc1", 50)
    assert r.server_state("pg_write", "dc1").weight == 50
    assert {s.server: s.weight for s in r.stats("pg_write")}["dc1"] == 50
    r.set_weight("pg_write", "dc1", 0)
    assert r.write_target("pg_write") is None
    r.set_weight("pg_write", "dc1", 1)
    assert r.write_target("pg_write") == "dc1"
    with pytest.raises(HaproxyError, match="invalid weight"):
        r.set_weight("pg_write", "dc1", 300)


def test_stats_count_sessions(haproxy: Haproxy) -> None:
    for _ in range(3):
        assert haproxy.reached() == "dc1"
    stats = {s.server: s for s in haproxy.router.stats("pg_write")}
    assert set(stats) == {"dc1", "dc2"}
    assert stats["dc1"].stot >= 3
    assert stats["dc2"].status == "MAINT"
    assert stats["dc1"].addr.startswith("127.0.0.1:")


def test_unknown_backend_and_server_name_what_exists(haproxy: Haproxy) -> None:
    r = haproxy.router
    with pytest.raises(UnknownBackend, match="pg_write") as exc:
        r.server_states("nope")
    assert "\n" not in exc.value.message
    with pytest.raises(UnknownBackend, match="other"):
        r.stats("nope")
    with pytest.raises(UnknownBackend, match="pg_write"):
        r.fence("nope", "dc1")
    with pytest.raises(UnknownServer, match="dc1, dc2"):
        r.set_state("pg_write", "dc3", "maint")
    with pytest.raises(UnknownServer, match="dc1, dc2"):
        r.route_to("pg_write", "dc3")
    assert r.write_target("pg_write") == "dc1"  # nothing changed


def test_bad_names_and_states_are_refused(haproxy: Haproxy) -> None:
    r = haproxy.router
    with pytest.raises(HaproxyError, match="invalid"):
        r.set_state("pg_write", "dc1;shutdown", "maint")
    with pytest.raises(HaproxyError, match="unknown server state"):
        r.set_state("pg_write", "dc1", "up")  # type: ignore[arg-type]


def test_user_level_socket_is_refused_with_a_hint(haproxy: Haproxy) -> None:
    r = HaproxyRouter(haproxy.user_socket)
    with pytest.raises(HaproxyError, match="admin") as exc:
        r.fence("pg_write", "dc1")
    assert not isinstance(exc.value, HaproxyUnreachable)
    assert "level admin" in (exc.value.hint or "")


def test_missing_and_stale_sockets_are_unreachable(tmp_path: Path) -> None:
    with pytest.raises(HaproxyUnreachable, match="does not exist"):
        HaproxyRouter(str(tmp_path / "missing.sock")).write_target("pg_write")
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # bound, never listening: like a socket left by a dead haproxy
        with pytest.raises(HaproxyUnreachable, match="refused"):
            HaproxyRouter(str(stale)).command("show info")


def write_router(haproxy: Haproxy) -> dict[str, object]:
    """A haproxy component of the test router's write backend, servers dc1 and dc2."""
    return {
        "driver": "haproxy",
        "options": {"socket": haproxy.router.socket_path, "backend": "pg_write"},
        "sites": {"dc1": {"server": "dc1"}, "dc2": {"server": "dc2"}},
    }


def test_observe_component_roles(haproxy: Haproxy, tmp_path: Path) -> None:
    component = {
        "driver": "haproxy",
        "options": {"socket": haproxy.router.socket_path, "backend": "pg_write", "timeout": 2.0},
        "sites": {"dc1": {"server": "dc1"}, "dc2": {"server": "dc2"}},
    }
    host = LocalHost()
    dc1 = observe_haproxy_component(host, "app", "router", component, "dc1")
    dc2 = observe_haproxy_component(host, "app", "router", component, "dc2")
    assert (dc1.healthy, dc1.role, dc1.data["write_target"]) == (True, "active", "dc1")
    assert (dc2.healthy, dc2.role) == (True, "standby")
    haproxy.router.set_state("pg_write", "dc2", "ready")
    both = observe_haproxy_component(host, "app", "router", component, "dc2")
    assert not both.healthy and "two writable" in both.detail
    component["options"]["socket"] = str(tmp_path / "gone.sock")  # type: ignore[index]
    down = observe_haproxy_component(host, "app", "router", component, "dc1")
    assert (down.healthy, down.role) == (False, "down")
    assert "does not exist" in down.detail


def test_observation_reads_the_server_and_the_write_target_from_one_answer(
    haproxy: Haproxy,
) -> None:
    """One ``server_states`` answer (two runtime-API commands) per observation, not two."""
    sent: list[str] = []
    router_command = HaproxyRouter.command

    def counting(self: HaproxyRouter, cmd: str) -> str:
        sent.append(cmd)
        return router_command(self, cmd)

    component = write_router(haproxy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HaproxyRouter, "command", counting)  # counts; HAProxy still answers
        seen = observe_haproxy_component(LocalHost(), "app", "router", component, "dc1")
    assert (seen.healthy, seen.role, seen.data["write_target"]) == (True, "active", "dc1")
    assert sent == ["show servers state pg_write", "show stat pg_write 4 -1"]


def test_a_shared_answer_is_never_older_than_share_within(haproxy: Haproxy) -> None:
    """Under the monitor's ``keeping``, probes of one backend share an answer received
    within ``share_within`` seconds: a change made since shows once that has passed, and
    at once to an observation that does not share (a run, ``failback status``)."""
    component = write_router(haproxy)
    host = LocalHost()
    kept = Kept()
    share_within = 1.0
    with keeping(kept, share_within=share_within):
        before = observe_haproxy_component(host, "app", "router", component, "dc1")
        answered = time.monotonic()
        haproxy.router.set_state("pg_write", "dc1", "maint")
        shared = observe_haproxy_component(host, "app", "router", component, "dc1")
        shared_at = time.monotonic()
        time.sleep(max(0.0, share_within - (time.monotonic() - answered)) + 0.05)
        after = observe_haproxy_component(host, "app", "router", component, "dc1")
    alone = observe_haproxy_component(host, "app", "router", component, "dc1")
    assert before.role == "active"
    if shared_at - answered <= share_within:  # (a machine slower than that: nothing shared)
        assert shared.role == "active", "the answer of a moment ago serves"
    assert after.role == "standby", "an answer older than share_within was used"
    assert alone.role == "standby"
    kept.close()


def test_a_failed_answer_is_not_shared(haproxy: Haproxy, tmp_path: Path) -> None:
    """A router that stopped answering is seen by the next probe at once."""
    gone = {
        "driver": "haproxy",
        "options": {"socket": str(tmp_path / "gone.sock"), "backend": "pg_write"},
        "sites": {"dc1": {"server": "dc1"}},
    }
    kept = Kept()
    with keeping(kept, share_within=10.0):
        first = observe_haproxy_component(LocalHost(), "app", "router", gone, "dc1")
        gone["options"]["socket"] = haproxy.router.socket_path  # type: ignore[index]
        second = observe_haproxy_component(LocalHost(), "app", "router", gone, "dc1")
    assert (first.healthy, first.role) == (False, "down")
    assert (second.healthy, second.role) == (True, "active")
    kept.close()


def test_an_observation_at_hand_is_made_from_a_recent_answer_only(
    haproxy: Haproxy, tmp_path: Path
) -> None:
    """``observe_haproxy_at_hand`` (the monitor's event loop, no I/O) gives what an
    observation sharing the answer would give, for either site of the backend; nothing
    when no answer was received, when it is older than ``share_within``, or when the last
    question failed (a router that stopped answering is asked by every probe)."""
    component = write_router(haproxy)
    host = LocalHost()
    kept = Kept()
    with keeping(kept, share_within=30.0):
        assert observe_haproxy_at_hand("router", component, "dc1") is None, "nothing asked"
        asked = observe_haproxy_component(host, "app", "router", component, "dc1")
        dc1 = observe_haproxy_at_hand("router", component, "dc1")
        dc2 = observe_haproxy_at_hand("router", component, "dc2")
    assert dc1 is not None and dc2 is not None
    assert (dc1.healthy, dc1.role, dc1.detail, dc1.data) == (
        asked.healthy, asked.role, asked.detail, asked.data,
    )  # fmt: skip
    assert (dc2.healthy, dc2.role, dc2.data["write_target"]) == (True, "standby", "dc1")
    with keeping(kept, share_within=0.001):
        time.sleep(0.01)
        assert observe_haproxy_at_hand("router", component, "dc1") is None, "too old"
    with keeping(None):
        assert observe_haproxy_at_hand("router", component, "dc1") is None, "nothing kept"
    gone = {**component, "options": {"socket": str(tmp_path / "gone.sock"), "backend": "pg_write"}}
    with keeping(kept, share_within=30.0):
        down = observe_haproxy_component(host, "app", "router", gone, "dc1")
        assert (down.healthy, down.role) == (False, "down")
        assert observe_haproxy_at_hand("router", gone, "dc1") is None, "a failure is shared"
    kept.close()


@pytest.mark.parametrize(
    ("mask", "state"),
    [(0, "ready"), (1, "maint"), (5, "maint"), (4, "ready"), (8, "drain"), (9, "maint")],
)
def test_admin_mask(mask: int, state: str) -> None:
    assert admin_state_from_mask(mask) == state


def test_parsers_on_recorded_answers() -> None:
    state = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight\n"
        "3 pg_write 1 dc1 127.0.0.1 2 0 1\n"
    )
    assert parse_servers_state(state) == [
        {
            "be_id": "3",
            "be_name": "pg_write",
            "srv_id": "1",
            "srv_name": "dc1",
            "srv_addr": "127.0.0.1",
            "srv_op_state": "2",
            "srv_admin_state": "0",
            "srv_uweight": "1",
        }
    ]
    stat = '# pxname,svname,status,last_chk\npg_write,dc1,UP,"a,b"\n'
    assert parse_stat_csv(stat) == [
        {"pxname": "pg_write", "svname": "dc1", "status": "UP", "last_chk": "a,b"}
    ]
