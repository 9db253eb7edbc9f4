"""When failover and failback happen by themselves, and how careful a failback is.

The defaults are the cautious ones (manual, approval required, a 5-minute stability
window, 30-minute hold-down): automatic failback is a choice a team makes on purpose,
the way keepalived's ``preempt_delay`` or Pacemaker's stickiness are.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from failback.config.common import ConfigModel, StrictInt
from failback.config.durations import Duration, parse_duration

__all__ = ["Policy"]


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
    max_failbacks_per_day: Annotated[StrictInt, Field(ge=0)] = Field(
        3, description="Automatic failbacks allowed in 24 hours; then a person must act."
    )
