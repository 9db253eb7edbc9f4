"""Where a DNS record set lives and how one server answered for it.

Kept apart from ``client`` (dnspython) so that loading the driver, which every
``failback`` command does to know its settings, does not load dnspython: only a
command that speaks DNS pays for it.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from failback.drivers.dns.errors import KeyUnusable
from failback.errors import FailbackError

if TYPE_CHECKING:
    import dns.name
    import dns.tsig


@dataclass(frozen=True)
class Answer:
    """A record set as one server answered it: its records (zone-file text) and TTL."""

    records: frozenset[str]
    ttl: int | None
    """None when the name has no such records (NXDOMAIN or no data)."""
    authoritative: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"records": sorted(self.records), "ttl": self.ttl, "aa": self.authoritative}


@dataclass(frozen=True)
class Zone:
    """Where and how to reach the name: the server, the zone, the key (by reference)."""

    server: str
    port: int
    zone: str
    name: str
    rdtype: str
    timeout: float
    key_name: str
    algorithm: str
    secret: Any
    """The key's ``SecretRef``: resolved only to sign, never kept, never shown."""

    @classmethod
    def of(cls, settings: Any) -> Zone:
        opts = settings.options
        return cls(
            server=opts.server, port=int(opts.port), zone=opts.zone, name=opts.fqdn,
            rdtype=opts.type, timeout=float(opts.timeout), key_name=opts.key.name,
            algorithm=opts.key.algorithm, secret=opts.key.secret,
        )  # fmt: skip

    @property
    def where(self) -> str:
        return (
            f"{self.server}:{self.port}"
            if ":" not in self.server
            else f"[{self.server}]:{self.port}"
        )

    def keyring(self) -> dict[dns.name.Name, dns.tsig.Key]:
        """The key, its secret read now (``KeyUnusable`` when it cannot be)."""
        try:
            secret = self.secret.resolve()
        except FailbackError as exc:
            raise KeyUnusable(f"TSIG key {self.key_name}: {exc.message}", exc.hint) from None
        import dns.tsig

        try:
            key = dns.tsig.Key(self.key_name, secret, self.algorithm)
        except (binascii.Error, ValueError, TypeError):
            raise KeyUnusable(
                f"TSIG key {self.key_name}: the secret {self.secret.describe()} is not base64",
                "write the key's secret as tsig-keygen prints it (the `secret` of its "
                "key statement), alone on one line",
            ) from None
        return {key.name: key}


def dns_client() -> ModuleType:
    """The module that speaks DNS (dnspython), imported when DNS is first spoken."""
    from failback.drivers.dns import client

    return client
