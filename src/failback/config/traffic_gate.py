"""Thresholds of the gates between a failback's traffic steps.

Each step shifts a share of the stateless tier's traffic back to the primary site,
bakes for ``bake_time`` and is judged from HAProxy's own per-server statistics, the
declared http checks and, optionally, a Prometheus instant query. A failed gate
sends all traffic back to the secondary site at once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from failback.model.durations import PositiveDuration, parse_duration
from failback.model.fields import ConfigModel, NonEmptyStr, StrictInt

__all__ = ["PrometheusGate", "TrafficGate"]


class PrometheusGate(ConfigModel):
    """An instant query whose value must stay on the right side of a threshold."""

    url: NonEmptyStr = Field(description="Prometheus base URL, e.g. http://prometheus:9090.")
    query: NonEmptyStr = Field(description="PromQL; its first sample's value is judged.")
    max: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="Fail when the value is above this."
    )
    min: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        None, description="Fail when the value is below this."
    )
    timeout: PositiveDuration = Field(
        parse_duration("5s"), description="How long the query may take."
    )


class TrafficGate(ConfigModel):
    """What a traffic step's gate accepts at the primary site."""

    max_error_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.01, description="Highest share of 5xx responses at the primary site during a bake."
    )
    max_response_ms: Annotated[StrictInt, Field(ge=1, le=3_600_000)] = Field(
        1000, description="Highest average response time (HAProxy's rtime) in ms."
    )
    min_requests: Annotated[StrictInt, Field(ge=0, le=1_000_000_000)] = Field(
        0,
        description="Responses needed before the error ratio is judged (health checks are "
        "judged whatever the traffic).",
    )
    database_after: Literal["tier", "first_step"] = Field(
        "tier",
        description="tier: the database switches once the tier has passed every step below "
        "100%; first_step: right after the first step's gate.",
    )
    prometheus: PrometheusGate | None = Field(None, description="Optional extra signal.")
