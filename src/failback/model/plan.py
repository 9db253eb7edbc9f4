"""What a plan is: an ordered list of step descriptions, serialisable and reviewable.

A plan is data, not code: it is printed by ``failback plan``, stored in the journal
when a run starts, and re-read on ``resume``. The engine maps each step's
``action`` name to the code that performs it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

StepKind = Literal["action", "gate"]


class StepSpec(BaseModel):
    """One idempotent step of a plan."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="unique within the plan, stable across resume")
    title: str = Field(description="what a person reads in the plan and the progress")
    action: str = Field(description="registered action name, e.g. 'postgres.promote'")
    kind: StepKind = "action"
    component: str | None = None
    site: str | None = None
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the action's inputs; `undo: false` means the step is never undone",
    )
    why: str | None = Field(default=None, description="why the step is in the plan")
    point_of_no_return: bool = Field(
        default=False,
        description="once applied, a failure no longer rolls back: the run stops for a person",
    )


class Plan(BaseModel):
    """An ordered list of steps for one service and one kind of run."""

    model_config = ConfigDict(extra="forbid")

    service: str
    kind: str = Field(description="failover | failback | switchover")
    from_site: str
    to_site: str
    steps: list[StepSpec]
    notes: list[str] = Field(default_factory=list)
