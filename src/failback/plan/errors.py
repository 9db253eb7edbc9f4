"""Why a planner refuses to plan (moved to ``failback.errors``: drivers raise it too)."""

from failback.errors import PlanRefused

__all__ = ["PlanRefused"]
