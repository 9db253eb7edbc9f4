"""The run and step state machine: every status a run or a step can have, in one place.

A run moves *forward* (its steps in order) or, once something decided to undo it,
*backward* (its applied steps undone, newest first). The direction is part of the
durable state: a run that started undoing is ``rolling-back`` in the journal before
the first undo runs, so a crash during the undo can never be mistaken for a forward
run that was interrupted (which ``resume`` would continue, counting undone steps as
done). Transitions are documented in docs/concepts.md ("Run states").
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """What the journal records for a run."""

    PENDING = "pending"
    """Created (service locked), no step started yet."""
    RUNNING = "running"
    """A process executes the steps forward."""
    WAITING_APPROVAL = "waiting-approval"
    """Stopped at a gate (or an ambiguous step) until a person approves."""
    OBSERVING = "observing"
    """Past the switch, inside the observation window: abort still switches back."""
    ROLLING_BACK = "rolling-back"
    """Undoing applied steps, newest first; never continues forward again."""
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled-back"
    """A failure was undone: the service is where it was before the run."""
    ABORTED = "aborted"
    """A person's abort was carried out (undone, or ended with --force)."""
    FAILED = "failed"
    """Stopped for a person: past the point of no return, or an undo failed."""


INTERRUPTED = "interrupted"
"""Not stored: how a ``running``/``rolling-back`` run shows when no live process holds
its lock (the process died)."""

TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.ROLLED_BACK, RunStatus.ABORTED})
"""Runs in these states are over and hold no lock."""

EXECUTING = frozenset({RunStatus.RUNNING, RunStatus.OBSERVING, RunStatus.ROLLING_BACK})
"""States in which a live process is expected to hold the run's lock."""


class StepStatus(StrEnum):
    """What the journal records for one step on the forward path."""

    PENDING = "pending"
    APPLYING = "applying"
    """apply() started; after a crash, check() decides whether it took effect."""
    VERIFYING = "verifying"
    DONE = "done"
    SKIPPED = "skipped"
    """Already in place when checked: nothing applied."""
    REVERTED = "reverted"
    """The observation window decided to switch back here (steps were appended)."""
    WAITING = "waiting"
    FAILED = "failed"


DONE_STEPS = frozenset({StepStatus.DONE, StepStatus.SKIPPED, StepStatus.REVERTED})
"""Forward steps that need nothing more."""

APPLIED_STEPS = frozenset(
    {
        StepStatus.DONE,
        StepStatus.APPLYING,
        StepStatus.VERIFYING,
        StepStatus.FAILED,
        StepStatus.WAITING,
    }
)
"""With at least one attempt, the step may have taken effect: an undo is due."""


class UndoStatus(StrEnum):
    """The backward path of one step (``steps.undo_status``)."""

    UNDOING = "undoing"
    """undo() started; after a crash the undo runs again (undos are idempotent), unless
    the step's ``Action.undone()`` proves it took effect (a command's ``undo_check``)."""
    UNDONE = "undone"
    UNDO_FAILED = "undo-failed"


_S = RunStatus
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED}),
    _S.RUNNING: frozenset(
        {
            _S.WAITING_APPROVAL,
            _S.OBSERVING,
            _S.ROLLING_BACK,
            _S.SUCCEEDED,
            _S.ROLLED_BACK,  # the observation window switched back, and that is done
            _S.FAILED,
            _S.ABORTED,  # abort --force of an interrupted run past its point of no return
        }
    ),
    _S.WAITING_APPROVAL: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED}),
    _S.OBSERVING: frozenset(
        {_S.RUNNING, _S.WAITING_APPROVAL, _S.SUCCEEDED, _S.ROLLED_BACK, _S.FAILED, _S.ABORTED}
    ),
    _S.ROLLING_BACK: frozenset({_S.ROLLED_BACK, _S.ABORTED, _S.FAILED}),
    _S.FAILED: frozenset({_S.RUNNING, _S.ROLLING_BACK, _S.ABORTED}),
    _S.SUCCEEDED: frozenset(),
    _S.ROLLED_BACK: frozenset(),
    _S.ABORTED: frozenset(),
}
"""Which status may follow which (staying in the same status is always allowed). The
journal refuses anything else: e.g. ``rolling-back -> running`` (a crash during an undo
resumed forward) cannot be written. docs/concepts.md draws this table."""


def transition_allowed(current: str, new: str) -> bool:
    """True when the state machine lets a run go from ``current`` to ``new``."""
    if current == new:
        return True
    return RunStatus(new) in RUN_TRANSITIONS[RunStatus(current)]
