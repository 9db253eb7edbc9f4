"""The lab's DNS: BIND 9's ``named``, authoritative for the lab's zone, and a second
``named`` as the caching resolver clients would ask (``lab up --dns``).

Both are children of the lab (started in the background, their PIDs in their own
files), on free ports of 127.0.0.1, with their configuration, the zone file and the
TSIG key in DIR/dns and DIR/secrets: nothing of the machine's own BIND is used (the
package's service is kept from starting by ``scripts/setup.sh``). The zone's TTL is
short (``TTL_S``) so that a failback's traffic gate, which waits it out, stays quick.

The key's secret is written twice, both 0600: DIR/secrets/tsig.secret (what the
topology's ``file:`` reference reads) and DIR/dns/tsig.key (named's key statement).
"""

from __future__ import annotations

import base64
import secrets
import shlex
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dns.message as dns_message
import dns.query as dns_query

from failback.hosts import Host
from failback.lab.errors import LabError
from failback.lab.ports import pick_ports, port_is_free

NAMED_BIN = "/usr/sbin/named"
ZONE = "lab.test."
NAME = "app.lab.test."
KEY_NAME = "failback-lab."
ALGORITHM = "hmac-sha256"
TTL_S = 2
LOCAL_ADDRESSES = {"dc1": "127.0.1.1", "dc2": "127.0.2.1"}
"""What the name answers per site in a lab on 127.0.0.1, where every site's address is
127.0.0.1: two loopback addresses (Linux answers all of 127/8) that stand for the sites.
A netns lab uses the sites' own addresses."""


@dataclass(frozen=True)
class LabDns:
    """The lab's authoritative server and resolver, and the name that follows ``app``."""

    dir: str
    port: int
    resolver_port: int
    addresses: dict[str, str] = field(default_factory=dict)
    server: str = "127.0.0.1"
    zone: str = ZONE
    name: str = NAME
    key_name: str = KEY_NAME
    algorithm: str = ALGORITHM
    ttl: int = TTL_S

    @property
    def secret_file(self) -> str:
        return str(Path(self.dir).parent / "secrets" / "tsig.secret")

    def conf(self, which: str) -> str:
        return str(Path(self.dir) / which / "named.conf")

    def pidfile(self, which: str) -> str:
        return str(Path(self.dir) / which / "named.pid")

    def log(self, which: str) -> str:
        return str(Path(self.dir) / which / "named.log")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "secret_file": self.secret_file}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabDns:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


SERVERS = ("auth", "resolver")
"""The two named processes: the zone's primary, and the caching resolver in front of it."""


def _udp_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(avoid: set[int]) -> int:
    """A port free for both TCP and UDP (DNS listens on both)."""
    for _ in range(50):
        (port,) = pick_ports(1, avoid=avoid)
        avoid.add(port)
        if _udp_free(port) and port_is_free(port):
            return port
    raise LabError("found no port free for both TCP and UDP", hint="stop some labs")


def _options(dns: LabDns, which: str, port: int) -> list[str]:
    where = Path(dns.dir) / which
    return [
        "options {",
        f'    directory "{where}";',
        f'    pid-file "{dns.pidfile(which)}";',
        f'    session-keyfile "{where / "session.key"}";',
        f'    managed-keys-directory "{where}";',
        f"    listen-on port {port} {{ {dns.server}; }};",
        "    listen-on-v6 { none; };",
        f"    allow-query {{ {dns.server}; }};",
        "    dnssec-validation no;",
        "    notify no;",
    ]


def render_auth(dns: LabDns) -> str:
    """named.conf of the primary: the zone, updatable only with the lab's key."""
    lines = [
        "# written by failback lab: the lab's authoritative DNS server",
        *_options(dns, "auth", dns.port),
        "    recursion no;",
        "};",
        "controls { };",
        f'include "{Path(dns.dir) / "tsig.key"}";',
        f'zone "{dns.zone.rstrip(".")}" {{',
        "    type primary;",
        f'    file "{Path(dns.dir) / "auth" / "zone.db"}";',
        f"    update-policy {{ grant {dns.key_name} name {dns.name} A AAAA SRV; }};",
        "};",
    ]
    return "\n".join(lines) + "\n"


def render_resolver(dns: LabDns) -> str:
    """named.conf of the resolver: caches, and forwards everything to the primary."""
    lines = [
        "# written by failback lab: the caching resolver clients would ask",
        *_options(dns, "resolver", dns.resolver_port),
        "    recursion yes;",
        f"    allow-recursion {{ {dns.server}; }};",
        "    forward only;",
        f"    forwarders {{ {dns.server} port {dns.port}; }};",
        "};",
        "controls { };",
    ]
    return "\n".join(lines) + "\n"


def render_zone(dns: LabDns, active: str) -> str:
    """The zone at creation: the name answers ``active``'s address."""
    return "\n".join([
        f"$TTL {dns.ttl}",
        f"@ IN SOA ns.{dns.zone} hostmaster.{dns.zone} 1 60 30 600 {dns.ttl}",
        f"@ IN NS ns.{dns.zone}",
        f"ns IN A {dns.server}",
        f"{dns.name} IN A {dns.addresses[active]}",
    ]) + "\n"  # fmt: skip


def write_files(h: Host, dns: LabDns, active: str) -> None:
    """Configuration, zone and a fresh TSIG key (256 random bits) for the lab."""
    for which in SERVERS:
        h.make_dirs(str(Path(dns.dir) / which), mode=0o700)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    h.write_text(dns.secret_file, secret + "\n", mode=0o600)
    key = f'key "{dns.key_name}" {{\n    algorithm {dns.algorithm};\n    secret "{secret}";\n}};\n'
    h.write_text(str(Path(dns.dir) / "tsig.key"), key, mode=0o600)
    h.write_text(str(Path(dns.dir) / "auth" / "zone.db"), render_zone(dns, active), mode=0o600)
    rewrite_configs(h, dns)


def rewrite_configs(h: Host, dns: LabDns) -> None:
    h.write_text(dns.conf("auth"), render_auth(dns), mode=0o600)
    h.write_text(dns.conf("resolver"), render_resolver(dns), mode=0o600)


def require_available() -> None:
    """``lab up --dns`` needs BIND's named (Debian package bind9)."""
    if not Path(NAMED_BIN).exists():
        raise LabError(
            f"{NAMED_BIN} is not installed: the DNS lab runs BIND 9",
            hint="run `make setup` (it installs the Debian package bind9)",
        )


def start(h: Host, dns: LabDns, avoid: set[int] | None = None) -> LabDns:
    """Start both servers (the primary first). With ``avoid`` (a new lab), a port taken
    meanwhile is replaced by a free one; without (a restart), the ports stay, since the
    topology names them."""
    for which in SERVERS:
        for attempt in range(5):
            try:
                _start_one(h, dns, which)
                break
            except LabError:
                if avoid is None or attempt == 4 or _pid(h, dns, which) is not None:
                    raise
                if which == "auth":
                    dns = LabDns(**{**asdict(dns), "port": pick_port(avoid)})
                else:
                    dns = LabDns(**{**asdict(dns), "resolver_port": pick_port(avoid)})
                rewrite_configs(h, dns)
    return dns


def _start_one(h: Host, dns: LabDns, which: str) -> int:
    if (pid := _pid(h, dns, which)) is not None:
        return pid
    argv = [NAMED_BIN, "-g", "-c", dns.conf(which)]
    command = f"nohup {shlex.join(argv)} > {shlex.quote(dns.log(which))} 2>&1 &"
    result = h.run_shell(command, timeout=10)
    if not result.ok:
        raise LabError(f"named ({which}) did not start: {result.tail()}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = _pid(h, dns, which)
        if pid is not None and _answers(dns, which):
            return pid
        if _exited(h, dns, which):
            break
        time.sleep(0.05)
    raise LabError(
        f"named ({which}) did not answer on {dns.server}:{_port(dns, which)}: "
        f"{_log_tail(h, dns, which)}",
        hint=f"see {dns.log(which)}",
    )


def _port(dns: LabDns, which: str) -> int:
    return dns.port if which == "auth" else dns.resolver_port


def _answers(dns: LabDns, which: str) -> bool:
    """The server answers a query for the zone's SOA (from its zone, or through it)."""
    query = dns_message.make_query(dns.zone, "SOA")
    try:
        response = dns_query.udp(query, dns.server, timeout=0.5, port=_port(dns, which))
    except Exception:  # not up yet: refused, timed out
        return False
    return bool(response.answer)


def _exited(h: Host, dns: LabDns, which: str) -> bool:
    text = _log_tail(h, dns, which)
    return "exiting (due to fatal error)" in text or "loading configuration: failure" in text


def _log_tail(h: Host, dns: LabDns, which: str) -> str:
    try:
        lines = h.read_text(dns.log(which)).strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(line.split(" ", 2)[-1] for line in lines[-3:])


def _pid(h: Host, dns: LabDns, which: str) -> int | None:
    try:
        pid = int(h.read_text(dns.pidfile(which)).strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and h.pid_alive(pid) else None


def pids(h: Host, dns: LabDns) -> dict[str, int | None]:
    return {which: _pid(h, dns, which) for which in SERVERS}


def stop(h: Host, dns: LabDns) -> list[str]:
    """Stop both servers (SIGTERM, then SIGKILL after 5 s); the names of those stopped."""
    stopped = []
    for which in reversed(SERVERS):
        pid = _pid(h, dns, which)
        if pid is None:
            continue
        h.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while h.pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if h.pid_alive(pid):
            h.kill(pid, signal.SIGKILL)
        stopped.append(f"named@{which}")
    return stopped


def describe(h: Host, dns: LabDns) -> dict[str, Any]:
    """``lab status``: each server's PID and whether it answers; the name's answer."""
    from failback.drivers.dns.client import ask_resolver
    from failback.drivers.dns.errors import DnsError

    doc: dict[str, Any] = {
        "server": dns.server, "port": dns.port, "resolver_port": dns.resolver_port,
        "zone": dns.zone, "name": dns.name, "pids": pids(h, dns),
    }  # fmt: skip
    doc["up"] = all(pid is not None for pid in doc["pids"].values())
    try:
        answer = ask_resolver(dns.server, dns.port, dns.name, "A", 1.0)
        doc["answer"] = sorted(answer.records)
        doc["site"] = next((s for s, a in dns.addresses.items() if [a] == doc["answer"]), None)
    except DnsError as exc:
        doc["error"] = exc.message
    return doc
