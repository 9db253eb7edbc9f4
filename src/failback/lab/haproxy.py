"""The lab's HAProxy: config, start (daemonized, pidfile), stop, liveness.

No health checks: in failback the router is *driven* (runtime API), never left to
guess which PostgreSQL is primary (plain TCP checks cannot tell, note 6). A
server-state file lets a restarted HAProxy come back with the servers' admin
states it had, so restarting the router never silently re-enables a fenced site.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from failback.drivers.haproxy import HaproxyError, HaproxyRouter
from failback.hosts import Host
from failback.lab.errors import LabError
from failback.lab.info import LabRouter
from failback.lab.web import haproxy_sections

HAPROXY_BIN = "/usr/sbin/haproxy"
FRONTEND = "pg_write_fe"


def router_paths(directory: Path, port: int) -> LabRouter:
    return LabRouter(
        port=port,
        socket=str(directory / "haproxy.sock"),
        config=str(directory / "haproxy.cfg"),
        pidfile=str(directory / "haproxy.pid"),
    )


def state_file(router: LabRouter) -> str:
    return str(Path(router.config).with_name("haproxy.state"))


def render_config(
    router: LabRouter, servers: dict[str, tuple[str, int]], active: str, web: Any = None
) -> str:
    """haproxy.cfg: one TCP frontend (the write endpoint) -> backend pg_write.

    ``servers``: site -> (address, port) of its PostgreSQL. Only ``active`` is enabled
    at boot; the others start ``disabled`` (maint), so a freshly started router never
    offers two write targets.
    """
    admin_tcp = (
        []
        if router.admin_port is None
        else [f"    stats socket ipv4@{router.address}:{router.admin_port} level admin"]
    )
    lines = [
        "# written by failback lab: the service's write endpoint",
        "global",
        f"    stats socket {router.socket} level admin mode 600",
        *admin_tcp,
        "    stats timeout 10s",
        f"    server-state-file {state_file(router)}",
        "defaults",
        "    mode tcp",
        "    load-server-state-from-file global",
        "    timeout connect 2s",
        "    timeout client 1h",
        "    timeout server 1h",
        f"frontend {FRONTEND}",
        f"    bind {router.address}:{router.port}",
        f"    default_backend {router.backend}",
        f"backend {router.backend}",
        "    default-server on-marked-down shutdown-sessions",
    ]
    for name, (address, port) in servers.items():
        flag = "" if name == active else " disabled"
        lines.append(f"    server {name} {address}:{port}{flag}")
    if web is not None:
        lines += haproxy_sections(web, active)
    return "\n".join(lines) + "\n"


def read_pid(host: Host, pidfile: str) -> int | None:
    try:
        text = host.read_text(pidfile).split()
    except (FileNotFoundError, OSError):
        return None
    return int(text[0]) if text and text[0].isdigit() else None


def router_pid(host: Host, router: LabRouter) -> int | None:
    """PID of the lab's running HAProxy, or None (stale pidfile counts as none)."""
    pid = read_pid(host, router.pidfile)
    return pid if pid is not None and host.pid_alive(pid) else None


def router_up(router: LabRouter) -> bool:
    try:
        HaproxyRouter(router.socket, 1.0).backends()
    except HaproxyError:
        return False
    return True


def start_router(host: Host, router: LabRouter, *, timeout: float = 10.0) -> int:
    """Start HAProxy daemonized (``-D -p pidfile``); wait until its socket answers.

    Raises ``LabError`` (with HAProxy's own words) when it cannot start, e.g.
    when the frontend port was taken since it was picked: the caller retries.
    """
    check = host.run([HAPROXY_BIN, "-c", "-q", "-f", router.config], timeout=30)
    if not check.ok:
        raise LabError(
            f"haproxy rejects {router.config}: {check.tail()}",
            hint="this is a bug in the lab's config template",
        )
    result = host.run([HAPROXY_BIN, "-f", router.config, "-D", "-p", router.pidfile], timeout=30)
    if not result.ok:
        raise LabError(
            f"haproxy did not start: {result.tail()}",
            hint=f"check port {router.port} on {router.address} and {router.config}",
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = router_pid(host, router)
        if pid is not None and router_up(router):
            return pid
        time.sleep(0.02)
    raise LabError(
        f"haproxy started but its socket {router.socket} did not answer within {timeout:g}s",
        hint=f"see {router.config}",
    )


def save_router_state(host: Host, router: LabRouter) -> None:
    """Dump the servers' states so a restart keeps them (``load-server-state-from-file``)."""
    try:
        answer = HaproxyRouter(router.socket, 2.0).command("show servers state")
    except HaproxyError:
        return
    if answer.startswith("1"):
        host.write_text(state_file(router), answer + "\n", mode=0o600)


def stop_router(host: Host, router: LabRouter, *, sig: signal.Signals = signal.SIGTERM) -> bool:
    """Stop the lab's HAProxy (SIGTERM: immediate stop); True if one was running."""
    pid = router_pid(host, router)
    if pid is None:
        return False
    if sig != signal.SIGKILL:
        save_router_state(host, router)
    host.kill(pid, sig)
    wait_pid_gone(host, pid, timeout=10)
    return True


def wait_pid_gone(host: Host, pid: int, *, timeout: float) -> bool:
    """Wait until ``pid`` is gone or a zombie (init reaps those: note 10)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not host.pid_alive(pid):
            return True
        time.sleep(0.01)
    return not host.pid_alive(pid)
