"""When failover and failback happen by themselves, and how careful a failback is.

The defaults are the cautious ones (manual, approval required, a 5-minute stability
window, 30-minute hold-down): automatic failback is a choice a team makes on purpose,
the way keepalived's ``preempt_delay`` or Pacemaker's stickiness are.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from failback.config.traffic_gate import TrafficGate
from failback.model.durations import Duration, PositiveDuration, parse_duration
from failback.model.fields import MAX_THRESHOLD, ConfigModel, NonEmptyStr, StrictInt

__all__ = ["DAY_NAMES", "Detection", "FailbackWindow", "Policy"]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS = {"weekdays": DAY_NAMES[:5], "weekends": DAY_NAMES[5:], "daily": DAY_NAMES}
_DAY_ALIASES = {
    alias: (day,)
    for day, full in zip(
        DAY_NAMES,
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        strict=True,
    )
    for alias in (day, full)
}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MIN_PROBE_INTERVAL_S = 0.05
"""The shortest ``interval`` / ``recheck_interval``: 20 observations a second."""


class Detection(ConfigModel):
    """How the monitor judges the drivers' own observations of each component.

    A failed observation is news: until the component is declared failed (or passes
    again), the next one starts ``recheck_interval`` after it instead of ``interval``
    (HAProxy's ``fastinter``), so a refusal is confirmed in a fraction of a second while a
    healthy component is still looked at only twice a second. With the defaults a dead
    primary is declared failed within 0.9 s of its death when it refuses connections (the
    next observation, at most 500 ms away, then two more 200 ms apart), and within 2.5 s
    when it hangs (a dead machine, a partition): the observation under way is cut off by
    the 1 s timeout, and each further ``interval`` it still hangs is another failure — at
    most ``interval + timeout + (failure_threshold - 1) * interval``. One stalled
    observation is not counted faster than that: a short stall must not look like a
    death. A component that stays failed is observed at ``interval`` again.
    """

    interval: PositiveDuration = Field(
        parse_duration("500ms"), description="Time between two observations of a component."
    )
    recheck_interval: PositiveDuration = Field(
        parse_duration("200ms"),
        description="Time between two observations of a component whose last one failed, "
        "until it is declared failed or passes again (never longer than interval).",
    )
    timeout: PositiveDuration = Field(
        parse_duration("1s"), description="An observation taking longer counts as failed."
    )
    failure_threshold: Annotated[StrictInt, Field(ge=1, le=MAX_THRESHOLD)] = Field(
        3, description="Consecutive failed observations before a component is declared failed."
    )

    @field_validator("interval", "recheck_interval")
    @classmethod
    def _not_too_often(cls, seconds: float) -> float:
        """Every observation is a query (or a socket) at a real server, for each service
        on it: below 50 ms a typo (``1ms`` for ``1s``) would load the servers being
        protected, and detection would be no faster (a failure needs several)."""
        if seconds < MIN_PROBE_INTERVAL_S:
            raise ValueError(
                f"must be at least {MIN_PROBE_INTERVAL_S * 1000:g}ms (got {seconds * 1000:g}ms):"
                " faster observations only load the servers; lower timeout or"
                " failure_threshold to detect sooner"
            )
        return seconds


class FailbackWindow(ConfigModel):
    """When an automatic failback may start: days of the week and a time of day range.

    A failback is a planned write pause: teams put it where their traffic is lowest.
    ``from`` later than ``to`` spans midnight (22:00-02:00).
    """

    days: list[NonEmptyStr] = Field(
        default_factory=lambda: ["daily"],
        description="mon..sun, or weekdays / weekends / daily.",
    )
    start: NonEmptyStr = Field(alias="from", description="HH:MM, local to timezone.")
    end: NonEmptyStr = Field(alias="to", description="HH:MM (exclusive), local to timezone.")
    timezone: NonEmptyStr = Field("UTC", description="IANA name, e.g. Europe/Berlin.")

    @field_validator("days")
    @classmethod
    def _days(cls, days: list[str]) -> list[str]:
        if not days:
            raise ValueError("name at least one day (mon..sun, weekdays, weekends, daily)")
        out: list[str] = []
        for day in days:
            word = day.strip().lower()
            members = _DAY_GROUPS.get(word) or _DAY_ALIASES.get(word)
            if members is None:
                raise ValueError(
                    f"{day!r} is not a day; use mon, tue, wed, thu, fri, sat, sun, "
                    "weekdays, weekends or daily"
                )
            out.extend(d for d in members if d not in out)
        return out

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError(f"expected a time of day HH:MM such as 02:00 (got {value!r})")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> FailbackWindow:
        if self.start == self.end:
            raise ValueError("from and to are the same time: the window would be empty")
        return self

    def describe(self) -> str:
        """``mon,tue 02:00-05:00 Europe/Berlin``, for status lines."""
        days = ",".join(self.days)
        for group, members in _DAY_GROUPS.items():
            if tuple(self.days) == members:
                days = group
        return f"{days} {self.start}-{self.end} {self.timezone}"


class Policy(ConfigModel):
    """The failover and failback policy of one service."""

    failover: Literal["manual", "automatic"] = Field(
        "manual", description="automatic: the monitor fails over when the active site fails."
    )
    failback: Literal["manual", "automatic"] = Field(
        "manual", description="automatic: the monitor starts a failback once the primary is stable."
    )
    approval: Literal["required", "none"] = Field(
        "required", description="required: a person approves the switchover gate of a failback."
    )
    stability_window: Duration = Field(
        parse_duration("5m"),
        description="How long the primary site must stay healthy before a failback starts.",
    )
    traffic_steps: list[Annotated[StrictInt, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        description="Percent of traffic sent back at each step; increasing, ending at 100.",
    )
    traffic_gate: TrafficGate = Field(
        default_factory=TrafficGate,  # type: ignore[arg-type]
        description="Thresholds of the gates between traffic steps.",
    )
    bake_time: Duration = Field(
        parse_duration("30s"), description="How long each traffic step runs before the next."
    )
    observation_window: Duration = Field(
        parse_duration("5m"),
        description="How long post-checks watch the service after a failback before it is done.",
    )
    hold_down: Duration = Field(
        parse_duration("30m"),
        description="Minimum time between two automatic failbacks of the service (anti-flap).",
    )
    max_failbacks_per_day: Annotated[StrictInt, Field(ge=0, le=1000)] = Field(
        3, description="Automatic failbacks allowed in 24 hours; then a person must act."
    )
    detection: Detection = Field(
        default_factory=Detection,  # type: ignore[arg-type]
        description="How fast the monitor declares a component failed (drivers' observations).",
    )
    failback_window: FailbackWindow | None = Field(
        None,
        description="When an automatic failback may start (days, from, to, timezone); "
        "omit: any time.",
    )
    synchronous: bool = Field(
        False,
        description="The monitor keeps the standby synchronous (zero-loss failover), relaxing "
        "to asynchronous while the standby is unhealthy.",
    )
    strict: bool = Field(
        False,
        description="With synchronous: never relax to asynchronous; writes wait for the standby.",
    )
    require_drill_within: Duration | None = Field(
        None,
        description="An automatic failback waits until a drill of the service (`failback "
        "drill`) succeeded within this time, e.g. 7d; omit: no drill required.",
    )

    @field_validator("require_drill_within")
    @classmethod
    def _drill_window_positive(cls, seconds: float | None) -> float | None:
        if seconds is not None and seconds <= 0:
            raise ValueError("must be longer than zero (omit it to require no drill)")
        return seconds

    @model_validator(mode="after")
    def _strict_needs_synchronous(self) -> Policy:
        if self.strict and not self.synchronous:
            raise ValueError("strict: true needs synchronous: true")
        return self
