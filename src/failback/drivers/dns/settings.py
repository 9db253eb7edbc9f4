"""Settings of a ``dns`` component: one name in one zone, and what it answers per site.

The name holds address records (``A``/``AAAA``: the active site's addresses; it moves at
once) or ``SRV`` records (one per site, whose weights failback shifts in steps, as it
does a web tier's). Updates are signed with a TSIG key whose secret is a reference
(``file:``/``env:``): the topology never holds it, and nothing failback shows does.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from failback.model.component import ComponentSettings, SettingsProblem
from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import ConfigModel, NonEmptyStr, Port, StrictInt
from failback.model.secrets import SecretRef

TsigAlgorithm = Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"]
"""What ``tsig-keygen -a`` makes and dnspython signs with (hmac-md5 is left out: broken)."""

MAX_TTL_S = 86400.0
"""A record's TTL is also how long every traffic gate waits: a day is already too long."""

_LABEL_HINT = "letters, digits, '-' and '_' between dots, e.g. app.example.com"


def _domain(value: str) -> str:
    """A domain name as written in a zone (absolute or not); stored with its final dot."""
    text = value.strip().lower()
    labels = text.rstrip(".").split(".")
    if not text or text == "." or any(not label for label in labels):
        raise ValueError(f"is not a domain name: {value!r} ({_LABEL_HINT})")
    for label in labels:
        if len(label) > 63 or not all(c.isalnum() or c in "-_*" for c in label):
            raise ValueError(f"is not a domain name: {value!r} ({_LABEL_HINT})")
    return text.rstrip(".") + "."


class DnsKey(ConfigModel):
    """The TSIG key the server accepts updates from (``key "NAME" { ... }`` in named.conf)."""

    name: NonEmptyStr = Field(description="The key's name, as the server's configuration has it.")
    algorithm: TsigAlgorithm = Field(
        "hmac-sha256", description="The key's algorithm (tsig-keygen's default: hmac-sha256)."
    )
    secret: SecretRef = Field(
        description="The key's base64 secret, by reference: file:/path (mode 0600) or "
        "env:NAME. Read when failback speaks to the server; never shown."
    )

    @field_validator("name")
    @classmethod
    def _key_name(cls, name: str) -> str:
        return _domain(name)


class DnsOptions(ConfigModel):
    """The authoritative server, the zone, the name failback moves, and how."""

    server: NonEmptyStr = Field(
        description="IP address of the zone's primary authoritative server (updates go there)."
    )
    port: Port = Field(53, description="Its port (UDP and TCP).")
    zone: NonEmptyStr = Field(description="The zone the name lives in (example.com).")
    name: NonEmptyStr = Field(
        description="The name failback moves: absolute (app.example.com.) or relative to "
        "the zone (app). For SRV records, the service name (_http._tcp.app)."
    )
    type: Literal["A", "AAAA", "SRV"] = Field(
        "A",
        description="A/AAAA: the name answers the active site's addresses and moves at "
        "once; SRV: one record per site whose weights are shifted in the policy's traffic "
        "steps.",
    )
    ttl: PositiveDuration = Field(
        parse_duration("60s"),
        description="TTL of the records failback writes (whole seconds): how long a resolver "
        "may keep an answer, so how long each traffic gate waits before the next step.",
    )
    key: DnsKey = Field(
        description="The TSIG key updates (and failback's queries) are signed with."
    )
    resolver: NonEmptyStr | None = Field(
        None,
        pattern=r"^[^\s]+:[0-9]{1,5}$",
        description="HOST:PORT of a resolver whose view failback also observes (a caching "
        "resolver clients use); a traffic gate waits until it answers the new records.",
    )
    resolver_grace: PositiveDuration = Field(
        parse_duration("5s"),
        description="How long past the TTL the resolver may still answer the old records "
        "before a traffic gate fails.",
    )
    timeout: PositiveDuration = Field(
        parse_duration("2s"), description="How long one query or update may take."
    )

    @field_validator("server")
    @classmethod
    def _server_address(cls, server: str) -> str:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise ValueError(
                f"must be an IP address (got {server!r}): updates go to the primary server "
                "itself, not through a name that may itself be moving"
            ) from None
        return server

    @field_validator("zone")
    @classmethod
    def _zone_name(cls, zone: str) -> str:
        return _domain(zone)

    @field_validator("ttl")
    @classmethod
    def _ttl_seconds(cls, ttl: float) -> float:
        if ttl < 1 or ttl != int(ttl) or ttl > MAX_TTL_S:
            raise ValueError("must be whole seconds between 1s and 1d (a record's TTL)")
        return ttl

    @property
    def fqdn(self) -> str:
        """The name, absolute (``app.example.com.``)."""
        if self.name.endswith("."):
            return self.name.lower()
        if self.name == "@":
            return self.zone
        return f"{self.name.lower()}.{self.zone}"


class DnsSite(ConfigModel):
    """What the name answers when this site takes traffic."""

    addresses: list[NonEmptyStr] = Field(
        default_factory=list, description="A/AAAA: the site's addresses (one or more)."
    )
    target: NonEmptyStr | None = Field(None, description="SRV: the host name of the site.")
    port: Port | None = Field(None, description="SRV: the port clients connect to.")
    priority: Annotated[StrictInt, Field(ge=0, le=65535)] = Field(
        0, description="SRV: the record's priority (every site's should be equal to share)."
    )

    @field_validator("addresses")
    @classmethod
    def _ip_addresses(cls, addresses: list[str]) -> list[str]:
        for address in addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        if len(set(addresses)) != len(addresses):
            raise ValueError("lists the same address twice")
        return addresses

    @field_validator("target")
    @classmethod
    def _target_name(cls, target: str | None) -> str | None:
        return None if target is None else _domain(target)


class DnsComponent(ComponentSettings):
    """A DNS name that follows the active site (RFC 2136 updates signed with TSIG)."""

    pair_only: ClassVar[bool] = True
    driver: Literal["dns"]
    options: DnsOptions
    sites: dict[str, DnsSite] = Field(
        description="Per-site records: site -> what the name answers."
    )

    def problems(self) -> list[SettingsProblem]:
        found: list[SettingsProblem] = []
        fqdn, zone = self.options.fqdn, self.options.zone
        if fqdn != zone and not fqdn.endswith("." + zone):
            found.append(SettingsProblem(
                ("options", "name"), f"{fqdn} is not inside the zone {zone}",
                "name it relative to the zone (app), or fix options.zone",
            ))  # fmt: skip
        for site, settings in self.sites.items():
            found += _site_problems(self.options.type, site, settings)
        seen: dict[str, str] = {}
        for site, settings in self.sites.items():
            for address in settings.addresses:
                if address in seen:
                    found.append(SettingsProblem(
                        ("sites", site, "addresses"),
                        f"site {site!r} answers {address} like site {seen[address]!r}",
                        "each site needs addresses of its own, or a move changes nothing",
                    ))  # fmt: skip
                seen.setdefault(address, site)
        return found


def _site_problems(kind: str, site: str, settings: DnsSite) -> list[SettingsProblem]:
    """A site's records must be of the component's ``type``."""
    where = ("sites", site)
    if kind == "SRV":
        if settings.addresses or settings.target is None or settings.port is None:
            return [SettingsProblem(
                where, "an SRV name needs target and port at every site (and no addresses)",
                "write e.g. {target: web1.example.com, port: 443}",
            )]  # fmt: skip
        return []
    version = 4 if kind == "A" else 6
    if settings.target is not None or settings.port is not None:
        return [SettingsProblem(
            where, f"an {kind} name takes addresses, not target/port",
            "set options.type: SRV for SRV records",
        )]  # fmt: skip
    if not settings.addresses:
        return [SettingsProblem(
            (*where, "addresses"), f"no address: the name would answer nothing at {site}",
            "list the site's addresses",
        )]  # fmt: skip
    wrong = [a for a in settings.addresses if ipaddress.ip_address(a).version != version]
    if wrong:
        return [SettingsProblem(
            (*where, "addresses"),
            f"{', '.join(wrong)} is not an IPv{version} address ({kind} records)",
            "use A for IPv4 and AAAA for IPv6 (one type per component)",
        )]  # fmt: skip
    return []
