"""The lab's web tier: one webapp process per site behind HAProxy's HTTP frontend.

HAProxy splits the tier's traffic between the sites by server weight (the failback's
traffic steps change them through the runtime API) and TCP-checks each instance.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from failback.hosts import Host
from failback.lab.errors import LabError

BACKEND = "web"
FRONTEND = "web_fe"


@dataclass(frozen=True)
class LabWeb:
    """The HTTP frontend's port and each site's webapp port."""

    port: int
    dir: str
    sites: dict[str, int] = field(default_factory=dict)
    backend: str = BACKEND
    address: str = "127.0.0.1"
    """Where the frontend listens: 127.0.0.1, or the edge namespace's address."""
    site_addresses: dict[str, str] = field(default_factory=dict)
    """Where each site's app listens (127.0.0.1 when not listed)."""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/"

    def site_address(self, site: str) -> str:
        return self.site_addresses.get(site, "127.0.0.1")

    def flag(self, site: str) -> Path:
        return Path(self.dir) / f"{site}.broken"

    def pidfile(self, site: str) -> Path:
        return Path(self.dir) / f"{site}.pid"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabWeb:
        return cls(
            port=int(data["port"]),
            dir=data["dir"],
            sites={k: int(v) for k, v in data.get("sites", {}).items()},
            backend=data.get("backend", BACKEND),
            address=data.get("address", "127.0.0.1"),
            site_addresses=dict(data.get("site_addresses", {})),
        )


def haproxy_sections(web: LabWeb, active: str) -> list[str]:
    """Frontend + backend lines for haproxy.cfg: all traffic at ``active`` to begin with."""
    lines = [
        f"frontend {FRONTEND}",
        "    mode http",
        f"    bind {web.address}:{web.port}",
        "    timeout client 30s",
        f"    default_backend {web.backend}",
        f"backend {web.backend}",
        "    mode http",
        "    balance roundrobin",
        "    timeout server 30s",
        # TCP health checks: a dead instance is taken out at once, while an instance
        # that answers 500 keeps its share until a traffic gate judges its 5xx ratio
        "    default-server check inter 300ms fall 2 rise 2",
    ]
    for site, port in web.sites.items():
        weight = 100 if site == active else 0
        lines.append(f"    server {site} {web.site_address(site)}:{port} weight {weight}")
    return lines


def start_app(h: Host, web: LabWeb, site: str, *, os_user: str | None = None) -> int:
    """Start one site's webapp in the background; return its PID once it answers."""
    pidfile = web.pidfile(site)
    pidfile.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "failback.lab.webapp", "--site", site,
        "--port", str(web.sites[site]), "--bind", web.site_address(site),
        "--dsn-file", str(Path(web.dir) / "dsn"), "--broken-flag", str(web.flag(site)),
        "--pidfile", str(pidfile),
    ]  # fmt: skip
    log = shlex.quote(str(Path(web.dir) / (site + ".log")))
    command = f"nohup {shlex.join(argv)} > {log} 2>&1 &"
    result = h.run_shell(command, timeout=10, as_user=os_user)
    if not result.ok:
        raise LabError(f"web app at {site} did not start: {result.tail()}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = app_pid(h, web, site)
        if pid is not None and _answers(web.site_address(site), web.sites[site]):
            return pid
        time.sleep(0.05)
    raise LabError(
        f"web app at {site} did not answer on port {web.sites[site]}",
        hint=f"see {Path(web.dir) / (site + '.log')}",
    )


def _answers(address: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # answering 500 (broken on purpose) is answering
    except OSError:
        return False


def app_pid(h: Host, web: LabWeb, site: str) -> int | None:
    try:
        pid = int(h.read_text(str(web.pidfile(site))).strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and h.pid_alive(pid) else None


def stop_apps(h: Host, web: LabWeb) -> list[str]:
    stopped = []
    for site in web.sites:
        pid = app_pid(h, web, site)
        if pid is None:
            continue
        h.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while h.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if h.pid_alive(pid):
            h.kill(pid, signal.SIGKILL)
        stopped.append(f"web@{site}")
    return stopped


def set_broken(h: Host, web: LabWeb, site: str, broken: bool) -> None:
    """Make ``site``'s instance answer 500 to everything (or heal it)."""
    if site not in web.sites:
        raise LabError(
            f"the lab has no web instance at {site!r}", hint=f"use one of: {', '.join(web.sites)}"
        )
    if broken:
        h.write_text(str(web.flag(site)), "broken by failback lab break\n", mode=0o644)
    else:
        h.remove(str(web.flag(site)))
