"""Health checks: prechecks before a failback, post-checks after it.

A check is chosen by ``type:`` (a discriminated union, for the same reason as drivers:
errors name the one model the user meant). ``use`` says when it runs; ``site`` says
which site's health it speaks for, so the monitor can judge a site, not just a service.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import MAX_THRESHOLD, ConfigModel, NonEmptyStr, Port, StrictInt

__all__ = [
    "CHECK_USES",
    "Check",
    "CheckBase",
    "CommandCheck",
    "HttpCheck",
    "SqlCheck",
    "TcpCheck",
]

CheckUse = Literal["precheck", "postcheck"]
CHECK_USES: tuple[str, ...] = ("precheck", "postcheck")


class CheckBase(ConfigModel):
    """Settings every check has."""

    name: NonEmptyStr = Field(description="Unique within the service; shown in plans and reports.")
    site: NonEmptyStr | None = Field(
        None, description="The site whose health this check tells (omit: the service's)."
    )
    timeout: PositiveDuration = Field(
        parse_duration("2s"), description="How long one attempt may take."
    )
    interval: PositiveDuration = Field(
        parse_duration("1s"), description="Time between attempts while a gate waits."
    )
    failure_threshold: Annotated[StrictInt, Field(ge=1, le=MAX_THRESHOLD)] = Field(
        3, description="Consecutive failures before the check counts as failed."
    )
    use: list[CheckUse] = Field(
        default_factory=lambda: ["precheck", "postcheck"],
        description="precheck: must pass before a failback; postcheck: after it.",
    )

    @field_validator("use")
    @classmethod
    def _use_not_empty(cls, use: list[str]) -> list[str]:
        if not use:
            raise ValueError("must name precheck, postcheck or both (or omit it: both)")
        if len(set(use)) != len(use):
            raise ValueError("lists the same use twice")
        return use


class TcpCheck(CheckBase):
    """Passes when a TCP connection to host:port opens."""

    type: Literal["tcp"]
    host: NonEmptyStr = Field(description="Address to connect to.")
    port: Port = Field(description="TCP port to connect to.")


class HttpCheck(CheckBase):
    """Passes when the URL answers with the expected status."""

    type: Literal["http"]
    url: NonEmptyStr = Field(description="http:// or https:// URL.")
    expect_status: Annotated[StrictInt, Field(ge=100, le=599)] = Field(
        200, description="HTTP status that means healthy."
    )
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = Field(
        "GET", description="HTTP method."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest.strip("/"):
            raise ValueError(f"must be an http:// or https:// URL (got {url!r})")
        return url

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: object) -> object:
        return method.upper() if isinstance(method, str) else method


class SqlCheck(CheckBase):
    """Passes when the query runs without error on a component that runs SQL (a database)."""

    type: Literal["sql"]
    component: NonEmptyStr = Field(
        description="A component of this service that runs SQL (e.g. a postgres database)."
    )
    query: NonEmptyStr = Field(description="SQL to run, e.g. select 1.")


class CommandCheck(CheckBase):
    """Passes when the command exits 0."""

    type: Literal["command"]
    command: NonEmptyStr = Field(description="Shell command to run.")


Check = Annotated[
    TcpCheck | HttpCheck | SqlCheck | CommandCheck,
    Field(discriminator="type"),
]
"""A check of any type; pydantic picks the model from ``type:``."""
