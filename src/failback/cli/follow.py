"""``failback run show ID --follow``: a run's steps and events as they happen, until it ends.

Like ``kubectl logs -f``: what already happened first, then each change as it lands.
It only reads the journal (any backend: SQLite or etcd), polling it as the API's
event stream does, because the process executing the run is another process, often
on another machine. Following never touches the run: Ctrl-C stops the reader only.

The exit code is the run's, as everywhere in the CLI: 0 succeeded, 1 failed, rolled
back, aborted or interrupted (no process executes it any more), 3 waiting for approval.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from failback.cli.output import fmt_time, stderr, stdout
from failback.engine.executor import Executor, RunOutcome
from failback.model.states import TERMINAL, RunStatus
from failback.store import Journal

POLL_S = 0.3
FOLLOWING = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.OBSERVING,
                       RunStatus.ROLLING_BACK})  # fmt: skip
"""States in which the run may still change: follow on."""
PAGE = 500
SETTLE_S = 10.0
"""How long a run that stopped may take to journal its closing event and report."""
ENDED = frozenset({*TERMINAL, RunStatus.FAILED})
HISTORY = 10_000
"""Events of the run printed before following (more than any run writes)."""


def follow(journal: Journal, run_id: int, *, as_json: bool) -> int:
    """Print the run's steps and events until it stops moving; return its exit code."""
    run = journal.get_run(run_id)  # an unknown id is refused here, before anything prints
    titles = {s["id"]: s.get("title", s["id"]) for s in run.plan.get("steps", [])}
    total = len(titles)
    executor = Executor(journal)
    seen: dict[str, tuple[str, str | None]] = {}
    after = journal.last_event_id()
    history = [e for e in journal.events(run_id=run_id, limit=HISTORY) if e["id"] <= after]
    for event in history:
        _emit_event(event, as_json)
    stopped_at: float | None = None
    try:
        while True:
            # the status first: whatever it reports is then fully drained below
            current = journal.get_run(run_id)
            status = executor.effective_status(current)
            settled = status not in FOLLOWING and _settled(journal, current, status)
            for line in _step_changes(journal, run_id, seen, titles, total, as_json):
                _write(line, as_json)
            events, after = _events_after(journal, after, run_id)
            for event in events:
                _emit_event(event, as_json)
            if status in FOLLOWING:
                stopped_at = None
            else:
                stopped_at = stopped_at or time.monotonic()
                if settled or time.monotonic() - stopped_at > SETTLE_S:
                    return _end(journal, run_id, status, as_json)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        stderr.print(
            f"stopped following run {run_id}; the run itself goes on"
            f" (`failback run show {run_id}` shows where it is)",
            style="yellow",
            markup=False,
        )
        return 130


def _settled(journal: Journal, run: Any, status: str) -> bool:
    """Whether the process executing the run wrote what follows its last status change.

    The executor sets the status first, then journals the event that says so (and, for
    a run that ended, its report): ending at the status alone could miss that event.
    """
    if status == RunStatus.WAITING_APPROVAL:
        newest = journal.events(run_id=run.id, limit=1)
        return bool(newest) and newest[-1]["kind"] == "gate.waiting"
    if status in ENDED:
        return run.report is not None
    return True  # interrupted: nobody writes any more


def _events_after(journal: Journal, after: int, run_id: int) -> tuple[list[dict[str, Any]], int]:
    """This run's events newer than ``after`` (every page), and the new ``after``."""
    mine: list[dict[str, Any]] = []
    while True:
        page = journal.events_since(after, limit=PAGE)
        for event in page:
            after = max(after, int(event["id"]))
            if event.get("run_id") == run_id:
                mine.append(event)
        if len(page) < PAGE:
            return mine, after


def _step_changes(journal: Journal, run_id: int, seen: dict[str, tuple[str, str | None]],
                  titles: dict[str, str], total: int, as_json: bool) -> Iterator[Any]:  # fmt: skip
    for step in journal.steps(run_id):
        state = (step.status, step.undo_status)
        if seen.get(step.step_id) == state:
            continue
        seen[step.step_id] = state
        if as_json:
            yield {
                "type": "step",
                "run_id": run_id,
                "idx": step.idx,
                "step_id": step.step_id,
                "title": titles.get(step.step_id, step.step_id),
                "status": step.status,
                "undo_status": step.undo_status,
                "attempts": step.attempts,
                "started_at": step.started_at,
                "finished_at": step.finished_at,
                "error": step.error,
            }
            continue
        when = fmt_time(step.finished_at or step.started_at or time.time())
        undo = f" (undo: {step.undo_status})" if step.undo_status else ""
        line = f"{when} step  [{step.idx + 1}/{max(total, step.idx + 1)}]"
        line += f" {titles.get(step.step_id, step.step_id)}: {step.status}{undo}"
        if step.error:
            line += f" - {step.error}"
        yield line


def _emit_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _write({"type": "event", **event}, as_json)
    else:
        _write(f"{fmt_time(event['ts'])} event {event['kind']}: {event['message']}", as_json)


def _end(journal: Journal, run_id: int, status: str, as_json: bool) -> int:
    run = journal.get_run(run_id)
    code = RunOutcome(run_id, status).exit_code
    if as_json:
        _write({"type": "end", "run_id": run_id, "status": status, "exit_code": code,
                "error": run.error, "hint": run.hint}, as_json)  # fmt: skip
        return code
    _write(f"run {run_id} {status}" + (f": {run.error}" if run.error else ""), as_json)
    if status == RunStatus.WAITING_APPROVAL:
        _write(f"approve with: failback approve {run_id}  (or: failback abort {run_id})", False)
    elif run.hint and code != 0:
        _write(f"hint: {run.hint}", False)
    return code


def _write(item: Any, as_json: bool) -> None:
    """One line, flushed at once: a pipe reader sees each change as it lands."""
    if as_json:
        sys.stdout.write(json.dumps(item, default=str) + "\n")
        sys.stdout.flush()
    else:
        stdout.print(item, markup=False, highlight=False)
        sys.stdout.flush()
