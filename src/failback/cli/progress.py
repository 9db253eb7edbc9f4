"""A Reporter that shows a run's progress on the terminal (stderr)."""

from __future__ import annotations

import time

from rich.status import Status

from failback.cli.output import fmt_duration, stderr

SYMBOLS = {
    "done": "[green]✓[/]",
    "skipped": "[green]✓[/]",
    "failed": "[red]✗[/]",
    "waiting": "[yellow]⏸[/]",
    "undone": "[yellow]↺[/]",
    "undo-failed": "[red]✗[/]",
}


class TerminalReporter:
    """One line per step; a live spinner line with the current step's progress."""

    def __init__(self) -> None:
        self._status: Status | None = None
        self._titles: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._last_progress = 0.0

    def step_started(self, idx: int, total: int, step_id: str, title: str) -> None:
        self._titles[step_id] = f"[{idx + 1}/{total}] {title}"
        self._started[step_id] = time.monotonic()
        self._stop_status()
        if stderr.is_terminal:
            self._status = stderr.status(self._titles[step_id])
            self._status.start()

    def step_finished(
        self, step_id: str, status: str, duration_s: float | None, detail: str | None = None
    ) -> None:
        self._stop_status()
        symbol = SYMBOLS.get(status, "•")
        note = " (already in place)" if status == "skipped" else ""
        line = f"{symbol} {self._titles.get(step_id, step_id)}{note}"
        if duration_s is not None:
            line += f" [dim]{fmt_duration(duration_s)}[/]"
        stderr.print(line, highlight=False)
        if detail:
            stderr.print(f"    {detail}", markup=False, highlight=False)

    def progress(self, step_id: str, message: str, fraction: float | None) -> None:
        title = self._titles.get(step_id, step_id)
        if self._status is not None:
            pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
            self._status.update(f"{title} —{pct} {message}")
        elif time.monotonic() - self._last_progress > 2:
            self._last_progress = time.monotonic()
            stderr.print(f"    {message}", markup=False, highlight=False)

    def log(self, message: str) -> None:
        stderr.print(f"    {message}", markup=False, highlight=False)

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
