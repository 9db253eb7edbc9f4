"""``failback lab up --network``: two routed paths between a client and a server.

A lab of its own, with no PostgreSQL: four network namespaces joined by veth links,

```
            dc1 (primary path)
 client -- router dc1 -- server        service address 10.9.0.1 (prefix 10.9.0.0/24)
        \\-- router dc2 --/              UDP echo on port 7007
            dc2 (backup path)
```

and the topology of a service ``net`` whose one component, ``path`` (driver
``route``), moves the client's route to 10.9.0.0/24 between the two routers. Each path
has a probe address, the server's end of that path's far link (10.1.N.2), routed
through that path only, so each path's health is known whether traffic uses it or not.
``break dc1 link`` takes the far link of the dc1 path down (both ends), which the
client cannot see locally: only a probe across the path finds it, as with a WAN link
that fails beyond the first router. ``repair dc1 link`` brings it back, with its routes.

Addresses are fixed: the namespaces are reached by nobody but their neighbours (no
bridge to the root namespace), so two network labs never collide. Names come from the
lab directory (``netns_plan.lab_id``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from failback.config import load_topology
from failback.errors import FailbackError
from failback.hosts import LocalHost
from failback.lab import detached
from failback.lab.errors import LabError
from failback.lab.info import LAB_FILE, unknown
from failback.lab.netns_plan import lab_id
from failback.lab.nsproc import NETNS_DIR, kill_all
from failback.lab.syscmd import run, run_json
from failback.lab.topology import AUTO_POLICY

KIND = "network"
"""lab.json's ``kind`` for this lab (the PostgreSQL labs have none)."""
SERVICE = "net"
COMPONENT = "path"
PATHS = ("dc1", "dc2")
PREFIX = "10.9.0.0/24"
SERVER_ADDRESS = "10.9.0.1"
ECHO_PORT = 7007
ECHO_MODULE = "failback.lab.udpecho"
WHATS = ("link",)
"""What ``lab break|repair SITE WHAT`` acts on in a network lab."""
_HINT = "the network lab needs root and iproute2 (ip netns); see docs/network.md"


@dataclass(frozen=True)
class LabPath:
    """One routed path: the client's link to its router, the router's link to the server."""

    site: str
    n: int
    router_netns: str

    @property
    def gateway(self) -> str:
        return f"10.0.{self.n}.1"

    @property
    def client_address(self) -> str:
        return f"10.0.{self.n}.2"

    @property
    def far_subnet(self) -> str:
        return f"10.1.{self.n}.0/24"

    @property
    def router_far(self) -> str:
        return f"10.1.{self.n}.1"

    @property
    def probe(self) -> str:
        """The server's end of the far link: reached through this path only."""
        return f"10.1.{self.n}.2"

    def to_dict(self) -> dict[str, Any]:
        return {
            "router_netns": self.router_netns,
            "gateway": self.gateway,
            "dev": self.site,
            "client_address": self.client_address,
            "probe": self.probe,
            "far_link": {"router": "server", "server": self.site, "subnet": self.far_subnet},
        }


@dataclass(frozen=True)
class NetworkLab:
    """Everything a command needs to use or take down a network lab (DIR/lab.json)."""

    dir: str
    client_netns: str
    server_netns: str
    paths: dict[str, LabPath]
    auto: bool = False

    @property
    def config(self) -> str:
        return str(Path(self.dir) / "failback.yaml")

    @property
    def namespaces(self) -> list[str]:
        routers = [p.router_netns for p in self.paths.values()]
        return [self.client_netns, *routers, self.server_netns]

    @property
    def echo_pid_file(self) -> str:
        return str(Path(self.dir) / "udpecho.pid")

    def path(self, site: str) -> LabPath:
        if site not in self.paths:
            raise unknown("path", site, list(self.paths))
        return self.paths[site]

    def document(self) -> dict[str, Any]:
        """``lab up --network --json``: where things are."""
        return {
            "kind": KIND,
            "dir": self.dir,
            "config": self.config,
            "service": SERVICE,
            "primary_site": PATHS[0],
            "network": {
                "client_netns": self.client_netns,
                "server_netns": self.server_netns,
                "server_address": SERVER_ADDRESS,
                "prefix": PREFIX,
                "echo_port": ECHO_PORT,
                "paths": {site: p.to_dict() for site, p in self.paths.items()},
            },
            **({"auto": True} if self.auto else {}),
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> NetworkLab:
        net = doc["network"]
        paths = {
            site: LabPath(site, n, net["paths"][site]["router_netns"])
            for n, site in enumerate(PATHS, start=1)
        }
        auto = bool(doc.get("auto"))
        return cls(doc["dir"], net["client_netns"], net["server_netns"], paths, auto)


def plan(directory: Path, *, auto: bool = False) -> NetworkLab:
    ident = lab_id(directory)
    paths = {site: LabPath(site, n, f"fb{ident}-{site}") for n, site in enumerate(PATHS, 1)}
    return NetworkLab(str(directory), f"fb{ident}-client", f"fb{ident}-server", paths, auto)


def is_network_lab(directory: Path) -> bool:
    """DIR holds a network lab (lab.json says ``kind: network``)."""
    try:
        doc = json.loads((Path(directory) / LAB_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def load(directory: Path) -> NetworkLab:
    try:
        return NetworkLab.from_document(json.loads((Path(directory) / LAB_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{directory}/{LAB_FILE} is damaged: {type(exc).__name__}: {exc}",
            hint="remove the lab with 'failback lab down --dir DIR --purge' and create it again",
        ) from None


# --------------------------------------------------------------------------- up


def _ip(netns: str, *args: str) -> None:
    run(["ip", "-n", netns, *args], hint=_HINT)


def _sysctl(netns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"], hint=_HINT)


def _far_routes(lab: NetworkLab, path: LabPath) -> None:
    """The routes that go with a path's far link (they go when its link goes down)."""
    _ip(path.router_netns, "route", "replace", PREFIX, "via", path.probe, "dev", "server")
    _ip(lab.server_netns, "route", "replace", f"10.0.{path.n}.0/24", "via", path.router_far,
        "dev", path.site)  # fmt: skip


def up(directory: Path, *, auto: bool = False) -> NetworkLab:
    """Build the network lab in ``directory`` (new or empty) and write its topology."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise LabError("the network lab needs root and iproute2 (ip netns)", hint=_HINT)
    directory = Path(os.path.abspath(directory))
    if directory.exists() and any(directory.iterdir()):
        raise LabError(
            f"{directory} is not empty",
            hint="choose a new or empty directory for the lab",
        )
    lab = plan(directory, auto=auto)
    existing = [ns for ns in lab.namespaces if (NETNS_DIR / ns).exists()]
    if existing:
        raise LabError(
            f"namespace {existing[0]} already exists",
            hint=f"take the lab in {directory} down first (failback lab down --dir {directory})",
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "state").mkdir(mode=0o700, exist_ok=True)
    _save(lab)  # first, so that 'lab down' can clear a half-built lab
    try:
        _build(lab)
        Path(lab.config).write_text(render_topology(lab))
        _validate(lab)
    except BaseException:
        down(directory)
        raise
    return lab


def _build(lab: NetworkLab) -> None:
    for ns in lab.namespaces:
        run(["ip", "netns", "add", ns], hint=_HINT)
        _ip(ns, "link", "set", "lo", "up")
    server = lab.server_netns
    for path in lab.paths.values():
        router = path.router_netns
        # client <-> router: the client's interface is named after the path
        _ip(lab.client_netns, "link", "add", path.site, "type", "veth", "peer", "name", "client",
            "netns", router)  # fmt: skip
        _ip(router, "link", "add", "server", "type", "veth", "peer", "name", path.site,
            "netns", server)  # fmt: skip
        _ip(lab.client_netns, "addr", "add", f"{path.client_address}/24", "dev", path.site)
        _ip(router, "addr", "add", f"{path.gateway}/24", "dev", "client")
        _ip(router, "addr", "add", f"{path.router_far}/24", "dev", "server")
        _ip(server, "addr", "add", f"{path.probe}/24", "dev", path.site)
        for ns, dev in ((lab.client_netns, path.site), (router, "client"), (router, "server"),
                        (server, path.site)):  # fmt: skip
            _ip(ns, "link", "set", dev, "up")
        _sysctl(router, "net.ipv4.ip_forward", "1")
        _far_routes(lab, path)
        # the probe address of each path is reached through that path only
        _ip(lab.client_netns, "route", "replace", path.far_subnet, "via", path.gateway,
            "dev", path.site)  # fmt: skip
    _ip(server, "addr", "add", f"{SERVER_ADDRESS}/32", "dev", "lo")
    primary = lab.paths[PATHS[0]]
    _ip(lab.client_netns, "route", "replace", PREFIX, "via", primary.gateway, "dev", primary.site)
    _start_echo(lab)


def _start_echo(lab: NetworkLab) -> int:
    argv = [
        "ip", "netns", "exec", lab.server_netns, sys.executable, "-m", ECHO_MODULE,
        "--address", SERVER_ADDRESS, "--port", str(ECHO_PORT),
    ]  # fmt: skip
    return detached.launch(
        LocalHost(), argv, log_file=str(Path(lab.dir) / "udpecho.log"),
        pid_file=lab.echo_pid_file, cwd=lab.dir, what="the UDP echo server",
    )  # fmt: skip


def _save(lab: NetworkLab) -> None:
    path = Path(lab.dir) / LAB_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(lab.document(), indent=2) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def topology(lab: NetworkLab) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "failover": "manual",
        "failback": "manual",
        "approval": "none",
        "stability_window": "3s",
        "observation_window": "0s",
    }
    if lab.auto:
        policy.update(AUTO_POLICY)
    return {
        "version": 1,
        "state_dir": str(Path(lab.dir) / "state"),
        "sites": {
            site: {"description": f"network path {site} (router namespace {p.router_netns})"}
            for site, p in lab.paths.items()
        },
        "services": {
            SERVICE: {
                "primary_site": PATHS[0],
                "description": f"network lab in {lab.dir}: {PREFIX} from {lab.client_netns}",
                "policy": policy,
                "components": {
                    COMPONENT: {
                        "driver": "route",
                        "options": {
                            "netns": lab.client_netns,
                            "prefix": PREFIX,
                            "target": SERVER_ADDRESS,
                            "probe_timeout": "500ms",
                        },
                        "sites": {
                            site: {"gateway": p.gateway, "dev": site, "probe": p.probe}
                            for site, p in lab.paths.items()
                        },
                    }
                },
            }
        },
    }


def render_topology(lab: NetworkLab) -> str:
    header = (
        "# Written by 'failback lab up --network': two routed paths from a client to a\n"
        f"# server; the route to {PREFIX} in {lab.client_netns} goes via dc1 (primary) or dc2.\n"
    )
    return header + yaml.safe_dump(topology(lab), sort_keys=False, width=100)


def _validate(lab: NetworkLab) -> None:
    try:
        load_topology(Path(lab.config))
    except FailbackError as exc:
        raise LabError(f"the lab's topology does not validate: {exc.message}", exc.hint) from None


# --------------------------------------------------------------------------- down


def down(directory: Path, *, purge: bool = False) -> dict[str, Any]:
    """Stop the echo server, delete the namespaces (their links go with them)."""
    directory = Path(os.path.abspath(directory))
    lab = load(directory)
    stopped: list[str] = []
    for ns in lab.namespaces:
        if (NETNS_DIR / ns).exists():
            if kill_all(ns):
                stopped.append(f"processes of {ns}")
            run(["ip", "netns", "del", ns], hint=_HINT)
            stopped.append(f"namespace {ns}")
    if purge:
        shutil.rmtree(directory, ignore_errors=True)
    return {"dir": str(directory), "stopped": stopped, "purged": purge}


# --------------------------------------------------------------------------- faults


def _check_what(what: str) -> None:
    if what not in WHATS:
        raise LabError(
            f"a network lab can break or repair a path's link, not {what!r}",
            hint="failback lab break dc1 link",
        )


def break_link(directory: Path, site: str, what: str) -> dict[str, Any]:
    """Cut ``site``'s path beyond its router: the far link goes down at both ends."""
    _check_what(what)
    lab = load(Path(os.path.abspath(directory)))
    path = lab.path(site)
    _ip(path.router_netns, "link", "set", "server", "down")
    _ip(lab.server_netns, "link", "set", site, "down")
    return {"site": site, "component": what, "link": "down"}


def repair_link(directory: Path, site: str, what: str) -> dict[str, Any]:
    """Bring ``site``'s far link back, and the routes that left with it (idempotent)."""
    _check_what(what)
    lab = load(Path(os.path.abspath(directory)))
    path = lab.path(site)
    _ip(path.router_netns, "link", "set", "server", "up")
    _ip(lab.server_netns, "link", "set", site, "up")
    _far_routes(lab, path)
    return {"site": site, "component": what, "link": "up"}


def status(directory: Path) -> dict[str, Any]:
    """Each path's far link up or not, the client's route to the prefix, the echo server."""
    lab = load(Path(os.path.abspath(directory)))
    doc = lab.document()
    paths: dict[str, Any] = {}
    for site, path in lab.paths.items():
        links = {
            link["ifname"]: link
            for link in run_json(["ip", "-n", path.router_netns, "-j", "link", "show"])
        } if (NETNS_DIR / path.router_netns).exists() else {}  # fmt: skip
        far = links.get("server")
        paths[site] = {"far_link_up": bool(far and "UP" in far.get("flags", []))}
    routes = []
    if (NETNS_DIR / lab.client_netns).exists():
        argv = ["ip", "-n", lab.client_netns, "-j", "-4", "route", "show", PREFIX]
        routes = run_json(argv)
    echo_pid = detached.find(lab.echo_pid_file, netns=lab.server_netns, needle=ECHO_MODULE)
    doc["paths"] = paths
    doc["route"] = [{"gateway": r.get("gateway"), "dev": r.get("dev")} for r in routes]
    doc["echo_pid"] = echo_pid
    doc["up"] = echo_pid is not None and all(p["far_link_up"] for p in paths.values())
    return doc
