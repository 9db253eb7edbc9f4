"""What a lab is made of, persisted as DIR/lab.json so every command finds it.

``lab up`` writes it once the lab runs; ``status``, ``break``, ``repair`` and
``down`` read it instead of guessing paths or ports. It holds the app password
(in ``dsn``), so it is written 0600.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from failback.hosts import Host
from failback.lab.control_plane import WITNESS, LabControlPlane
from failback.lab.dns import LabDns
from failback.lab.errors import LabError
from failback.lab.pool import LabPool
from failback.lab.web import LabWeb

LAB_FILE = "lab.json"
SITES = ("dc1", "dc2")
COMPONENTS = ("db", "router", "web", "host", "etcd")
"""What ``lab break|repair SITE WHAT`` acts on (``etcd``: the machine's etcd member, in a
lab with a control plane)."""
WITNESS_COMPONENTS = ("host", "etcd")
"""The witness runs no database and no web app: only these apply to it."""


@dataclass(frozen=True)
class LabSite:
    """One site's PostgreSQL cluster in the lab."""

    pgdata: str
    port: int
    os_user: str
    log_file: str
    address: str = "127.0.0.1"
    """Where the site's machine answers: 127.0.0.1, or its namespace's address."""
    netns: str | None = None
    """The site's network namespace in a ``--hosts netns`` lab."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabRouter:
    """The lab's HAProxy: its write endpoint port and admin socket."""

    port: int
    socket: str
    config: str
    pidfile: str
    backend: str = "pg_write"
    address: str = "127.0.0.1"
    """Where its frontends listen: 127.0.0.1, or the edge namespace's address."""
    admin_port: int | None = None
    """A TCP stats socket on ``address`` (the netns lab: failback reaches the runtime
    API over the network, as it would an HAProxy on another machine)."""

    @property
    def admin(self) -> str:
        """The ``socket`` setting failback uses: TCP when there is one, else the path."""
        return self.socket if self.admin_port is None else f"{self.address}:{self.admin_port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabInfo:
    """Everything a lab command (or a person) needs to use a running lab."""

    dir: str
    config: str
    service: str
    dsn: str
    """libpq conninfo of the database endpoint clients use: PgBouncer (HAProxy in labs
    made before PgBouncer was part of the lab)."""
    router: LabRouter
    sites: dict[str, LabSite]
    sync: bool = False
    bin_dir: str = ""
    primary_site: str = "dc1"
    extra: dict[str, Any] = field(default_factory=dict)
    pool: Any = None
    """The lab's PgBouncer (lab.pool.LabPool), None in labs made before it existed."""
    router_dsn: str = ""
    """libpq conninfo of HAProxy's write endpoint (refused connections while switching)."""
    web: Any = None
    """The lab's web tier (lab.web.LabWeb), None in labs made before it existed."""
    network: dict[str, Any] | None = None
    """``--hosts netns``: the namespaces, bridge and addresses (lab.netns), and the lab's
    ssh key and known_hosts; None when everything runs on 127.0.0.1."""
    control_plane: LabControlPlane | None = None
    """``--control-plane``: the etcd members (dc1, dc2, witness) and where the monitors
    live; None in a lab without one."""
    dns: LabDns | None = None
    """``--dns``: the authoritative server and resolver (named) and the name that follows
    the service's active site; None in a lab without one."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir": self.dir,
            "config": self.config,
            "service": self.service,
            "dsn": self.dsn,
            "router": self.router.to_dict(),
            "sites": {name: site.to_dict() for name, site in self.sites.items()},
            "sync": self.sync,
            "bin_dir": self.bin_dir,
            "primary_site": self.primary_site,
            **({"router_dsn": self.router_dsn} if self.router_dsn else {}),
            **({"pool": self.pool.to_dict()} if self.pool else {}),
            **({"web": self.web.url, "web_tier": self.web.to_dict()} if self.web else {}),
            **({"extra": self.extra} if self.extra else {}),
            **({"network": self.network} if self.network else {}),
            **({"control_plane": self.control_plane.to_dict()} if self.control_plane else {}),
            **({"dns": self.dns.to_dict()} if self.dns else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabInfo:
        return cls(
            dir=data["dir"],
            config=data["config"],
            service=data["service"],
            dsn=data["dsn"],
            router=LabRouter(**data["router"]),
            sites={name: LabSite(**site) for name, site in data["sites"].items()},
            sync=bool(data.get("sync", False)),
            bin_dir=data.get("bin_dir", ""),
            primary_site=data.get("primary_site", "dc1"),
            extra=dict(data.get("extra", {})),
            pool=_pool_from(data.get("pool")),
            router_dsn=data.get("router_dsn", ""),
            web=_web_from(data.get("web_tier")),
            network=data.get("network"),
            control_plane=(
                LabControlPlane.from_dict(data["control_plane"])
                if data.get("control_plane")
                else None
            ),
            dns=LabDns.from_dict(data["dns"]) if data.get("dns") else None,
        )

    @property
    def machines(self) -> list[str]:
        """What ``break ... host``, ``partition`` and ``heal`` accept: the sites, and the
        witness when the lab has a control plane."""
        return [*self.sites, *([WITNESS] if self.control_plane else [])]

    def site(self, name: str) -> LabSite:
        """The site ``name``; ``LabError`` naming the lab's sites otherwise."""
        if name not in self.sites:
            raise unknown("site", name, self.machines)
        return self.sites[name]

    def machine(self, name: str) -> str:
        """``name`` when it is a site or the witness; ``LabError`` with did-you-mean."""
        if name not in self.machines:
            raise unknown("site", name, self.machines)
        return name


def _pool_from(data: dict[str, Any] | None) -> Any:
    if not data:
        return None
    return LabPool.from_dict(data)


def _web_from(data: dict[str, Any] | None) -> Any:
    if not data:
        return None
    return LabWeb.from_dict(data)


def lab_file(directory: Path) -> Path:
    return Path(directory) / LAB_FILE


def save_info(host: Host, info: LabInfo) -> None:
    host.write_text(
        str(lab_file(Path(info.dir))), json.dumps(info.to_dict(), indent=2) + "\n", mode=0o600
    )


def load_info(host: Host, directory: Path) -> LabInfo:
    """Read DIR/lab.json; ``LabError`` when DIR is not a lab (or the file is damaged)."""
    path = lab_file(directory)
    if not host.exists(str(path)):
        raise LabError(
            f"{directory} is not a failback lab (no {LAB_FILE})",
            hint="create one with 'failback lab up DIR', or pass the directory of an existing lab",
        )
    try:
        return LabInfo.from_dict(json.loads(host.read_text(str(path))))
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(
            f"{path} is damaged: {type(exc).__name__}: {exc}",
            hint="remove the lab with 'failback lab down DIR --purge' and create it again",
        ) from None


def unknown(kind: str, name: str, known: list[str] | tuple[str, ...]) -> LabError:
    """ "the lab has no KIND 'x'", with did-you-mean and the known names as the hint."""
    close = difflib.get_close_matches(name, list(known), n=1)
    listed = ", ".join(known)
    return LabError(
        f"the lab has no {kind} {name!r}",
        hint=f"did you mean {close[0]!r}? known: {listed}" if close else f"use one of: {listed}",
    )


def check_component(what: str) -> str:
    if what not in COMPONENTS:
        raise unknown("component", what, COMPONENTS)
    return what
