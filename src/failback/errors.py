"""Error types that carry a one-line cause and a hint for the person who hit them.

Every error a user can cause (bad config, bad arguments, unreachable host, wrong
password, wrong cluster) is raised as a ``FailbackError`` subclass; the CLI turns
it into one line, a hint and an exit code, never a traceback.
"""

from __future__ import annotations


class FailbackError(Exception):
    """A failure explained to a person: what went wrong and what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, object]:
        return {"error": self.message, "hint": self.hint, "kind": type(self).__name__}


class UsageError(FailbackError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = 2


class StateError(FailbackError):
    """The state directory or a run's journal forbids the request (wrong id, lock held...)."""

    exit_code = 2


class StepFailed(FailbackError):
    """A step's apply or verify did not reach its goal; the engine decides what follows."""

    exit_code = 1


class SafetyRefusal(FailbackError):
    """An action was refused because it could lose data or create two primaries."""

    exit_code = 1


class PlanRefused(FailbackError):
    """The observed state makes the requested run unsafe or pointless: no plan is made.

    Raised by the planner and by drivers judging their own component
    (``Driver.check_plan``), which is why it lives here and not in the planner."""

    exit_code = 1


class LeadershipLost(FailbackError):
    """This monitor cannot prove it is the control plane's leader (lease lost, deposed,
    etcd unreachable): the step it was about to apply is refused, never half-applied,
    and the run is left as it stands for the leader elected next to continue."""

    exit_code = 1
