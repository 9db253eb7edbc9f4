"""Settings of a ``route`` component: one prefix, one routing table, a path per site.

A site of a ``route`` component is a *network path*: a next hop (``gateway``, out of
``dev``) that traffic to the prefix takes while that site is active, and a ``probe``
address that is reached through that path only, so that the health of a path that is
not in use can be proved too (the standby path of a router is exactly as interesting
as the active one: it is where traffic goes next).

```yaml
      path:
        driver: route
        options: {netns: client, prefix: 10.9.0.0/24, target: 10.9.0.1}
        sites:
          dc1: {gateway: 10.0.1.1, dev: dc1, probe: 10.1.1.2}
          dc2: {gateway: 10.0.2.1, dev: dc2, probe: 10.1.2.2}
```
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration
from failback.model.fields import ConfigModel, NonEmptyStr, StrictInt

MAIN_TABLE = 254
"""The kernel's main routing table (``ip route`` without ``table``)."""


def _ipv4_address(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address (e.g. 10.0.1.1)") from None


def _ipv4_prefix(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 prefix (e.g. 10.9.0.0/24): {exc}") from None


IPv4Address = Annotated[str, Field(min_length=1), AfterValidator(_ipv4_address)]
IPv4Prefix = Annotated[str, Field(min_length=1), AfterValidator(_ipv4_prefix)]


class RouteOptions(ConfigModel):
    """What both paths share: the prefix, where its route lives, how paths are probed."""

    prefix: IPv4Prefix = Field(description="The destination prefix whose route moves.")
    target: IPv4Address = Field(
        description="An address inside the prefix that answers ICMP echo: the verify step "
        "sends its probes there, and they must leave and come back by the new path."
    )
    netns: NonEmptyStr | None = Field(
        None,
        description="The network namespace (ip netns) of the machine that routes; unset: "
        "the namespace failback runs in. Only on the machine failback runs on.",
    )
    table: Annotated[StrictInt, Field(ge=1, le=2**31 - 1)] = Field(
        MAIN_TABLE, description="Routing table id (254: main)."
    )
    probe_timeout: PositiveDuration = Field(
        1.0, description="How long one path probe waits for its echo reply."
    )
    verify_probes: Annotated[StrictInt, Field(ge=1, le=1000)] = Field(
        5, description="Echo requests the verify step sends to the target through the path."
    )


class RouteSite(ConfigModel):
    """One network path: the next hop traffic takes while this site is active."""

    gateway: IPv4Address = Field(description="The next hop of this path.")
    dev: NonEmptyStr | None = Field(
        None,
        description="The interface towards the next hop; unset: the one the kernel picks "
        "for the gateway. Name it when the paths leave by different interfaces: the "
        "verify step then proves by its counters which one packets take.",
    )
    probe: IPv4Address = Field(
        description="An address beyond this path, routed through this path's next hop "
        "only (e.g. the far end of the path's link): its echo proves the path healthy, "
        "whether traffic uses the path now or not."
    )


class RouteComponent(ComponentSettings):
    """A prefix's route, moved atomically between one next hop per site."""

    pair_only: ClassVar[bool] = True
    driver: Literal["route"]
    options: RouteOptions
    sites: dict[str, RouteSite]

    def problems(self) -> list[SettingsProblem]:
        found: list[SettingsProblem] = []
        prefix = ipaddress.IPv4Network(self.options.prefix)
        if ipaddress.IPv4Address(self.options.target) not in prefix:
            found.append(
                SettingsProblem(
                    ("options", "target"),
                    f"target {self.options.target} is not inside prefix {prefix}",
                    hint="the verify step probes the target through the route it moved: "
                    "give an address of the prefix that answers ping",
                )
            )
        seen_gateway: dict[str, str] = {}
        seen_probe: dict[str, str] = {}
        for site, path in self.sites.items():
            other = seen_gateway.setdefault(path.gateway, site)
            if other != site:
                found.append(
                    SettingsProblem(
                        ("sites", site, "gateway"),
                        f"{site} uses the same next hop as {other} ({path.gateway})",
                        hint="each site is a different path: give it its own gateway",
                    )
                )
            other = seen_probe.setdefault(path.probe, site)
            if other != site:
                found.append(
                    SettingsProblem(
                        ("sites", site, "probe"),
                        f"{site} probes the same address as {other} ({path.probe})",
                        hint="a probe proves one path only when its address is reached "
                        "through that path alone",
                    )
                )
            if ipaddress.IPv4Address(path.probe) in prefix:
                found.append(
                    SettingsProblem(
                        ("sites", site, "probe"),
                        f"probe {path.probe} is inside the prefix {prefix} that moves",
                        hint="probe an address outside the prefix, routed through this "
                        "path only: a probe that follows the moving route proves nothing "
                        "about the path that is not in use",
                    )
                )
        return found
