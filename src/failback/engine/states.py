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
    """undo() started; after a crash it runs again (undos are idempotent)."""
    UNDONE = "undone"
    UNDO_FAILED = "undo-failed"
