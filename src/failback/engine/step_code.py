"""Which code runs a plan step: a driver's action (from the catalog) or a gate."""

from __future__ import annotations

from failback.drivers.catalog import action_class
from failback.engine.gates import GATES
from failback.engine.run_context import Action, RunContext
from failback.errors import FailbackError
from failback.model.plan import StepSpec


def build_action(spec: StepSpec, ctx: RunContext) -> Action:
    """The code of ``spec.action``: a driver's action, or one of the engine's gates."""
    cls = action_class(spec.action) or GATES.get(spec.action)
    if cls is None:
        raise FailbackError(
            f"step {spec.id}: unknown action {spec.action!r}",
            hint="the plan was written by another version of failback",
        )
    return cls(spec, ctx)
