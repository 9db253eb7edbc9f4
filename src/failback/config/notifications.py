"""The optional ``notifications:`` section: where the monitor POSTs its events.

Webhooks are how a failover at 03:00 reaches a person (a chat channel, a pager
bridge). Header values are secrets by reference (``env:HOOK_TOKEN``), because a
webhook URL's bearer token is as sensitive as a database password. A webhook never
holds up the monitor: each one has a timeout and a bounded number of retries.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import ConfigModel, NonEmptyStr, StrictInt
from failback.model.secrets import SecretRef

__all__ = ["Notifications", "Webhook"]


class Webhook(ConfigModel):
    """One HTTP endpoint that receives every event as a JSON POST."""

    url: NonEmptyStr = Field(description="http:// or https:// URL events are POSTed to.")
    timeout: PositiveDuration = Field(
        parse_duration("5s"), description="How long one delivery attempt may take."
    )
    retries: Annotated[StrictInt, Field(ge=0, le=20)] = Field(
        3, description="Further attempts after a failed delivery (1 s, 2 s, 4 s... apart)."
    )
    headers: dict[str, SecretRef] = Field(
        default_factory=dict,
        description="Extra HTTP headers; values are secrets by reference (env:NAME, file:/path).",
    )
    events: list[NonEmptyStr] = Field(
        default_factory=list,
        description="Only these event kinds, or prefixes ending in '.' (failover.); "
        "omit: every event.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"must be an http:// or https:// URL (got {url!r})")
        return url

    def wants(self, kind: str) -> bool:
        """True when this webhook subscribes to events of ``kind``."""
        if not self.events:
            return True
        return any(kind == e or (e.endswith(".") and kind.startswith(e)) for e in self.events)


class Notifications(ConfigModel):
    """Where events go besides the monitor's own JSON-lines log."""

    webhooks: list[Webhook] = Field(
        default_factory=list, description="Endpoints every event is POSTed to as JSON."
    )
