"""Planners: pure functions from topology + observed state to an ordered plan."""

from failback.model.plan import Plan, StepSpec

__all__ = ["Plan", "StepSpec"]
