"""The optional ``control_plane:`` section: several monitors, one leader, state in etcd.

Without the section failback is what it always was: one monitor on one machine, its
journal a SQLite file in the state directory. With it, every ``failback monitor --node
NAME`` campaigns for leadership through etcd (coord/election.py), only the leader acts,
and what a run needs to be resumed by another node lives in etcd under ``prefix``.

The lease TTL is the price of a leader's death: a monitor elsewhere may act only once
the dead leader's lease has run out. The default (3 s) keeps an unplanned failover whose
leader died with its site under the 5 s goal (issue 14); etcd rounds shorter leases up
to its minimum (2 s at default timings), so 2 s is the floor accepted here.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator, model_validator

from failback.config.api import parse_listen
from failback.errors import UsageError
from failback.model.durations import PositiveDuration
from failback.model.fields import ConfigModel, NonEmptyStr
from failback.model.secrets import SecretRef
from failback.store.binding import EtcdBinding

if TYPE_CHECKING:  # imported where a client is made: a topology without one never needs it
    from failback.coord import EtcdClient

__all__ = ["ControlPlane", "ControlPlaneNode", "EtcdSettings"]

MIN_LEASE_TTL = 2
"""etcd's smallest lease at default heartbeat/election timings (it rounds up to it)."""
MAX_LEASE_TTL = 600
DEFAULT_LEASE_TTL = 3
_PREFIX = re.compile(r"^/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.\-]$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")


class EtcdSettings(ConfigModel):
    """How to reach the etcd cluster: its client URLs, and credentials by reference."""

    endpoints: list[NonEmptyStr] = Field(
        min_length=1,
        description="etcd's client URLs, e.g. [http://10.0.0.1:2379, http://10.0.0.2:2379]; "
        "list every member: a request goes to the next one when one does not answer.",
    )
    username: str | None = Field(
        None, description="etcd user (when etcd's authentication is enabled)."
    )
    password: SecretRef | None = Field(
        None, description="That user's password, by reference (env:NAME or file:/path)."
    )
    ca_file: Path | None = Field(
        None, description="PEM CA bundle that signs etcd's server certificates (https:// URLs)."
    )
    cert_file: Path | None = Field(None, description="PEM client certificate (mutual TLS).")
    key_file: SecretRef | None = Field(
        None, description="The client certificate's private key file, by reference (file:/path)."
    )
    request_timeout: PositiveDuration = Field(  # type: ignore[assignment]
        1.0, description="Give up on one member's answer after this long, then try the next."
    )

    @field_validator("endpoints")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/\s]+/?$", url.strip()):
                raise ValueError(
                    f"{url!r} is not an etcd client URL: write http://HOST:PORT or https://HOST:PORT"
                )
        return [url.strip().rstrip("/") for url in value]

    @field_validator("ca_file", "cert_file")
    @classmethod
    def _relative_to_config(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        context = info.context if isinstance(info.context, dict) else {}
        base = Path(context.get("config_dir") or Path.cwd())
        return Path(base, value.expanduser()).absolute()

    @model_validator(mode="after")
    def _pairs(self) -> EtcdSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.key_file is not None and self.key_file.kind != "file":
            raise ValueError("key_file is read from a file: write file:/path/to/client.key")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("give both cert_file and key_file (mutual TLS), or neither")
        uses_tls = any(url.startswith("https://") for url in self.endpoints)
        if not uses_tls and (self.ca_file or self.cert_file):
            raise ValueError("ca_file/cert_file are for https:// endpoints; these are http://")
        if uses_tls and not all(url.startswith("https://") for url in self.endpoints):
            raise ValueError("mix of http:// and https:// endpoints: use one scheme for all")
        return self


class ControlPlaneNode(ConfigModel):
    """One machine that runs ``failback monitor --node NAME``."""

    site: str | None = Field(
        None,
        description="The site this node lives in (a key of sites:). It fences that site's "
        "primary when it is cut off from etcd. Omit for a witness outside every site.",
    )
    description: str = Field("", description="Free text for people reading the topology.")
    peer: str | None = Field(
        None,
        description="HOST:PORT this node's monitor answers the other nodes on, directly "
        "(not through etcd): when etcd is unreachable, a site's node asks every other node "
        "whether it can reach etcd either; only if all say no does its primary keep "
        "serving (failsafe). Without it, a node cut off from etcd always fences its site.",
    )

    @field_validator("peer")
    @classmethod
    def _peer_is_host_port(cls, value: str | None) -> str | None:
        if value is not None:
            _host, port = parse_listen(value)
            if port == 0:
                raise ValueError("give the peer port explicitly (the other nodes dial it)")
        return value


class ControlPlane(ConfigModel):
    """``control_plane:``: etcd, the key prefix, the leader lease, the monitor nodes."""

    etcd: EtcdSettings
    prefix: str = Field(
        "/failback",
        description="Every key failback writes lives under it; give each topology its own "
        "(e.g. /failback/payments) when several share an etcd cluster.",
    )
    lease_ttl: int = Field(
        DEFAULT_LEASE_TTL,
        description="Seconds a leader's lease lives without renewal: how long a dead "
        f"leader holds the others back. At least {MIN_LEASE_TTL} (etcd's minimum).",
    )
    safety_margin: PositiveDuration | None = Field(  # type: ignore[assignment]
        None,
        description="A leader that cannot renew stops acting this long before its lease "
        "could end. Default: a third of lease_ttl.",
    )
    peer_token: SecretRef | None = Field(
        None,
        description="The token nodes present to each other's peer address (env:NAME or "
        "file:/path, at least 16 characters). Needed when any node has a peer.",
    )
    nodes: dict[str, ControlPlaneNode] = Field(
        min_length=1,
        description="The monitors: node name -> where it runs. `failback monitor --node NAME` "
        "names one of them.",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        text = value.strip()
        if not _PREFIX.match(text):
            raise ValueError(
                f"{value!r} is not a key prefix: write an absolute path such as /failback/app "
                "(letters, digits, . _ - /; not / alone, no trailing /)"
            )
        return text

    @field_validator("lease_ttl")
    @classmethod
    def _ttl(cls, value: int) -> int:
        if not MIN_LEASE_TTL <= value <= MAX_LEASE_TTL:
            raise ValueError(
                f"must be from {MIN_LEASE_TTL} to {MAX_LEASE_TTL} seconds (got {value}); "
                f"etcd rounds shorter leases up to {MIN_LEASE_TTL} s"
            )
        return value

    @field_validator("nodes")
    @classmethod
    def _node_names(cls, value: dict[str, ControlPlaneNode]) -> dict[str, ControlPlaneNode]:
        for name in value:
            if not _NODE_NAME.match(name):
                raise ValueError(
                    f"node name {name!r}: letters, digits, . _ - (up to 63, not starting "
                    "with a symbol)"
                )
        return value

    @model_validator(mode="after")
    def _peers_need_a_token(self) -> ControlPlane:
        if any(n.peer for n in self.nodes.values()) and self.peer_token is None:
            raise ValueError(
                "nodes have peer addresses but no peer_token: give one (env:NAME or "
                "file:/path) so that only failback's nodes can ask them"
            )
        return self

    @model_validator(mode="after")
    def _margin_below_ttl(self) -> ControlPlane:
        if self.safety_margin is not None and self.safety_margin >= self.lease_ttl:
            raise ValueError(
                f"safety_margin {self.safety_margin:g} s must be below lease_ttl "
                f"({self.lease_ttl} s)"
            )
        return self

    def node(self, name: str) -> ControlPlaneNode:
        """The node called ``name``; a UsageError with did-you-mean when none is."""
        if name not in self.nodes:
            close = difflib.get_close_matches(name, list(self.nodes), n=1)
            known = ", ".join(self.nodes)
            raise UsageError(
                f"no node {name!r} in control_plane.nodes",
                f"did you mean {close[0]!r}? known: {known}" if close else f"known: {known}",
            )
        return self.nodes[name]

    def open_etcd(self) -> EtcdClient:
        """A client for this control plane's etcd (TLS and credentials as configured)."""
        from failback.coord import EtcdClient

        settings = self.etcd
        return EtcdClient(
            settings.endpoints,
            request_timeout=settings.request_timeout,
            ca_file=settings.ca_file,
            cert_file=settings.cert_file,
            key=settings.key_file,
            username=settings.username,
            password=settings.password,
        )

    def binding(self) -> EtcdBinding:
        """What a state directory records to open this control plane's journal later
        without the topology (secrets as references only)."""
        settings = self.etcd
        return EtcdBinding(
            endpoints=tuple(settings.endpoints),
            prefix=self.prefix,
            request_timeout=settings.request_timeout,
            ca_file=str(settings.ca_file) if settings.ca_file else None,
            cert_file=str(settings.cert_file) if settings.cert_file else None,
            key_file=settings.key_file.describe() if settings.key_file else None,
            username=settings.username,
            password=_reference(settings.password),
        )


def _reference(secret: SecretRef | None) -> str | None:
    """A secret as the state directory may record it: its reference, never its value."""
    if secret is None:
        return None
    if secret.reference is None:
        raise UsageError(
            "control_plane.etcd.password is written inline in the topology",
            hint="give it by reference (env:NAME or file:/path): failback never copies a "
            "secret's value into its state directory",
        )
    return secret.describe()
