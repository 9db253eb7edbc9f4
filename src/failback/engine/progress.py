"""How a run tells a person (or nobody) what it is doing right now."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def step_started(self, idx: int, total: int, step_id: str, title: str) -> None: ...

    def step_finished(
        self, step_id: str, status: str, duration_s: float | None, detail: str | None = None
    ) -> None: ...

    def progress(self, step_id: str, message: str, fraction: float | None) -> None: ...

    def log(self, message: str) -> None: ...


class NullReporter:
    """Says nothing: used with --json and in tests."""

    def step_started(self, idx: int, total: int, step_id: str, title: str) -> None:
        return None

    def step_finished(
        self, step_id: str, status: str, duration_s: float | None, detail: str | None = None
    ) -> None:
        return None

    def progress(self, step_id: str, message: str, fraction: float | None) -> None:
        return None

    def log(self, message: str) -> None:
        return None
