"""Settings of an ``haproxy`` component: a backend with one server per site."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from failback.drivers.haproxy.names import NAME_RULE as HAPROXY_NAME_RULE
from failback.drivers.haproxy.names import name_problem as haproxy_name_problem
from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import ConfigModel, NonEmptyStr, StrictInt


class HaproxyOptions(ConfigModel):
    """The HAProxy backend whose servers failback enables, drains and weights."""

    socket: NonEmptyStr = Field(
        description="HAProxy's admin-level runtime API: a unix socket path on the machine "
        "failback runs on (/run/haproxy/admin.sock), or HOST:PORT of a TCP stats socket "
        "(`stats socket ipv4@10.0.0.5:9999 level admin`) when HAProxy runs on another "
        "machine. Reached over the network: no SSH command in the switchover."
    )
    backend: NonEmptyStr = Field(description="Backend that holds one server per site.")
    timeout: PositiveDuration = Field(
        parse_duration("2s"), description="How long one admin-socket command may take."
    )
    tier: Literal["database", "stateless"] = Field(
        "database",
        description="database: the backend is the write endpoint of the database (one "
        "server takes traffic); stateless: a tier whose traffic failback shifts between the "
        "sites in steps by server weight, with health gates.",
    )
    endpoint: NonEmptyStr | None = Field(
        None,
        pattern=r"^[^\s:]+:[0-9]{1,5}$",
        description="host:port clients use (the frontend): failback writes through it to "
        "verify that writes land on the new primary.",
    )

    @field_validator("socket")
    @classmethod
    def _socket_form(cls, socket: str) -> str:
        if socket.startswith("/"):
            return socket
        host, sep, port = socket.rpartition(":")
        if sep and host and port.isdigit() and 1 <= int(port) <= 65535 and " " not in host:
            return socket
        raise ValueError(
            "must be an absolute path of a unix socket (/run/haproxy/admin.sock) or "
            "HOST:PORT of a TCP stats socket (10.0.0.5:9999)"
        )

    @field_validator("backend")
    @classmethod
    def _backend_name(cls, backend: str) -> str:
        return _haproxy_name("backend", backend)


class HaproxySite(ConfigModel):
    """The server of the backend that sends traffic to this site."""

    server: NonEmptyStr = Field(description="Server name inside the backend.")
    weight: Annotated[StrictInt, Field(ge=0, le=256)] | None = Field(
        None, description="Weight at full traffic (0..256); the server's own weight if omitted."
    )

    @field_validator("server")
    @classmethod
    def _server_name(cls, server: str) -> str:
        return _haproxy_name("server", server)


def _haproxy_name(kind: str, name: str) -> str:
    """The runtime's own rule (drivers/haproxy/names.py), checked before any run."""
    problem = haproxy_name_problem(kind, name)
    if problem is not None:
        raise ValueError(f"{problem}; {HAPROXY_NAME_RULE}")
    return name


class HaproxyComponent(ComponentSettings):
    """An HAProxy backend that routes clients to the active site."""

    pair_only: ClassVar[bool] = True
    driver: Literal["haproxy"]
    options: HaproxyOptions
    sites: dict[str, HaproxySite] = Field(description="Per-site server: site name -> server.")

    def problems(self) -> list[SettingsProblem]:
        found = []
        servers: dict[str, str] = {}
        for site, settings in self.sites.items():
            if settings.server in servers:
                found.append(SettingsProblem(
                    ("sites", site, "server"),
                    f"site {site!r} uses the same server {settings.server!r} as site "
                    f"{servers[settings.server]!r}",
                    "each site needs its own server in the backend",
                ))  # fmt: skip
            servers.setdefault(settings.server, site)
        return found
