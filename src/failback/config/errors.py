"""Problems found in a topology file, and the error that carries all of them.

A person fixing a config at 3 a.m. wants every mistake at once, each pointing at a
line they can jump to (``FILE:LINE: key: message``), not one traceback per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from failback.errors import FailbackError

__all__ = ["ConfigError", "ConfigWarning", "Problem"]


@dataclass(frozen=True, order=False)
class Problem:
    """One mistake in a topology file.

    ``line`` is 1-based; it is ``None`` only for a problem with the whole file (missing,
    unreadable, empty). ``key`` is the dotted path of the offending key
    (``services.app.components.db.sites.dc1.port``), empty for whole-file and syntax
    problems.
    """

    file: str
    line: int | None
    key: str
    message: str
    hint: str | None = None

    LABEL: ClassVar[str] = ""
    """Put before the message (``warning: `` for a warning)."""

    def render(self) -> str:
        """``FILE:LINE: dotted.key: message (hint: ...)``, the format editors can jump to."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        message = f"{self.LABEL}{self.message}"
        text = f"{where}: {self.key}: {message}" if self.key else f"{where}: {message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "key": self.key,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True, order=False)
class ConfigWarning(Problem):
    """Something in a valid topology file that will work, but not as safely as it could.

    Rendered ``FILE:LINE: key: warning: message (hint: ...)``; it never makes a file
    invalid. ``component``, ``site`` and ``action`` say which plan steps it concerns
    (``failback plan`` shows only the warnings of the steps it prints).
    """

    service: str = ""
    component: str = ""
    site: str = ""
    action: str = ""
    LABEL: ClassVar[str] = "warning: "

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "severity": "warning"}


def _sort_key(problem: Problem) -> tuple[int, str, str]:
    return (problem.line or 0, problem.key, problem.message)


class ConfigError(FailbackError):
    """The topology file cannot be used; ``problems`` lists every reason found.

    ``message`` is a one-line summary (``failback.yaml: 3 problems``) so that callers
    that only print ``message`` stay short; ``str()`` and :meth:`render` give the full
    list, one problem per line.
    """

    exit_code = 2

    def __init__(self, problems: list[Problem], hint: str | None = None) -> None:
        unique: list[Problem] = []
        for problem in sorted(problems, key=_sort_key):
            if problem not in unique:
                unique.append(problem)
        self.problems = unique
        files = sorted({p.file for p in unique}) or ["topology"]
        count = len(unique)
        message = f"{', '.join(files)}: {count} problem{'s' if count != 1 else ''}"
        if hint is None and count == 1:
            hint = unique[0].hint
        super().__init__(message, hint)

    def render(self) -> str:
        """The summary line followed by one line per problem."""
        return "\n".join([self.message, *(f"  {p.render()}" for p in self.problems)])

    def __str__(self) -> str:
        return self.render()

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data["problems"] = [p.to_dict() for p in self.problems]
        return data
