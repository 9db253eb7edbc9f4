"""Why a planner refuses to plan."""

from failback.errors import FailbackError


class PlanRefused(FailbackError):
    """The observed state makes the requested run unsafe or pointless."""

    exit_code = 1
