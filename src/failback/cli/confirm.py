"""The one place a command asks a person before it changes something.

Every command that changes something takes ``--yes``. Without it a person at a
terminal is asked; with no terminal on stdin (a script, cron, CI, a pipe) nobody can
answer, so the command refuses at once (exit 2, nothing changed) rather than hang on
a prompt nobody sees or read a stray line of input as the answer.
"""

from __future__ import annotations

import sys

import typer

from failback.errors import UsageError


def confirm(question: str, yes: bool) -> None:
    """Return when confirmed; UsageError (exit 2) when nobody can answer; Abort on "no"."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"not confirmed: {question.rstrip('?')}? (stdin is not a terminal to ask)",
            hint="add --yes (-y) to confirm non-interactively",
        )
    if not typer.confirm(question, default=False, err=True):
        raise typer.Abort()
