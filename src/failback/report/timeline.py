"""A run as a picture over time: what happened when, relative to the run's start.

The dashboard draws it in the browser (``GET /api/v1/runs/{id}/timeline``) and
``failback report`` draws it as SVG; both read this one shape, so that what a person
sees live during an incident is what the post-incident report shows afterwards.

``build_timeline`` is pure: it takes what the journal holds of one run (its record,
steps, events and measurements) and returns a ``Timeline``; ``timeline_for`` reads
those from a journal. Every time is in seconds since the run was created (``t0``),
so that a drawing needs no clock arithmetic; ``t0`` itself is a Unix time.

What is *not* here, on purpose: step outputs (a command's line and output may carry
anything) and diverged rows (clients' data). The timeline is served without a token,
like the run list; event messages are the one-line ones every caller already sees
(``/api/v1/runs/{id}/events`` without the token), and the API redacts secrets in every
response anyway.

Where the journal keeps no time of its own, the timeline derives it, and says so:

* approvals (who, when) come from the ``gate.approved`` events;
* an undo's start is the end of the previous undo (or the ``run.rolling_back`` event):
  undos run one after another, newest step first, and the journal stamps their ends;
* the write-unavailability window starts when the first router stopped taking writes
  (``writes_stopped_at.SITE``, journaled before the router acts) and ends when the last
  one sent them again (``writes_resumed_at.SITE``) or a rollback sent them back
  (``writes_restored_at.SITE``); its ``measured_s`` is the run's own measurement.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from failback.model.states import DONE_STEPS, RunStatus, UndoStatus
from failback.store import Journal, RunRecord, StepRecord

UNAVAILABILITY_MEASUREMENTS = ("write_unavailability_s", "switch_back_write_unavailability_s")
"""Measurements of a write-unavailability window (a switch back measures its own)."""

LIVE = frozenset(
    {
        RunStatus.PENDING,
        RunStatus.RUNNING,
        RunStatus.WAITING_APPROVAL,
        RunStatus.OBSERVING,
        RunStatus.ROLLING_BACK,
    }
)
"""Statuses in which the run moves on (or waits for a person, the wait growing): its
axis ends now. An ``interrupted`` or ``failed`` run ends at its last journaled change."""

_APPROVED_BY = re.compile(r" approved by (?P<by>.+)$")


class TimelineStep(BaseModel):
    """One step of the plan as a bar: from its first start to its end."""

    index: int = Field(description="position in the plan (0-based)")
    id: str
    title: str
    kind: Literal["action", "gate"]
    action: str = Field(description="e.g. `postgres.promote`, `gate.approval`")
    component: str | None = None
    site: str | None = None
    status: str = Field(description="forward status: pending, applying, done, failed, ...")
    start_s: float | None = Field(None, description="first start; None: never started")
    end_s: float | None = Field(None, description="end; None: not ended (yet)")
    duration_s: float | None = None
    attempts: int = 0
    point_of_no_return: bool = Field(
        False, description="once this step applied, a failure no longer rolls back"
    )
    undo: str | None = Field(None, description="undo status once undone: undoing, undone, ...")
    error: str | None = Field(None, description="the one-line error of a failed step or undo")


class TimelineWait(BaseModel):
    """A time the run spent waiting: for a person's approval, a stability window, an
    observation window, a health check."""

    step: str
    kind: str = Field(description="approval, stability, observation, checks, clean_room, ...")
    start_s: float
    end_s: float | None = Field(None, description="None: still waiting")
    by: str | None = Field(None, description="who approved (approval waits)")
    question: str | None = Field(None, description="what the person was asked")


class TimelineApproval(BaseModel):
    """A person approved a gate."""

    step: str
    by: str | None
    at_s: float


class WriteWindow(BaseModel):
    """Clients could not write: from the first router refusing or holding writes at
    ``stopped_site`` to the last one sending them to ``resumed_site``."""

    stopped_site: str
    resumed_site: str | None = Field(None, description="None: not resumed (yet)")
    start_s: float
    end_s: float | None = None
    measured_s: float | None = Field(
        None, description="the run's measurement of this window (None: not measured)"
    )
    measurement: str | None = Field(None, description="its name, e.g. write_unavailability_s")
    rollback: bool = Field(False, description="ended by a rollback sending writes back")


class PointOfNoReturn(BaseModel):
    """The plan's point of no return: past it, undoing could lose writes or create two
    primaries, so a failure stops for a person instead of rolling back."""

    step: str
    title: str
    passed: bool = Field(description="the step applied (and was not undone)")
    at_s: float | None = Field(None, description="when the step started applying")


class TimelineUndo(BaseModel):
    """One step undone during a rollback or an abort (newest step first)."""

    step: str
    status: Literal["undone", "undo-failed"]
    start_s: float = Field(description="derived: the end of the previous undo")
    end_s: float
    message: str


class TimelineRollback(BaseModel):
    """The run turned backward: why, and how it ends when every undo succeeds."""

    reason: str | None
    ending: str | None
    start_s: float | None


class TimelineEvent(BaseModel):
    """A journal event of the run (no data: a command's output stays out)."""

    id: int
    at_s: float
    kind: str
    step: str | None
    message: str


class TimelineMeasurement(BaseModel):
    name: str
    value: float | None
    unit: str | None
    step: str | None
    note: str | None


class Timeline(BaseModel):
    """One run over time. Times are seconds since ``t0`` (the run's creation, Unix time).

    Draw ``steps`` as bars on an axis from 0 to ``end_s``; a bar with ``end_s: null``
    runs to ``end_s`` of the timeline (``live`` is true while the run is not over).
    """

    run_id: int
    service: str
    kind: str
    status: str
    from_site: str | None
    to_site: str | None
    t0: float = Field(description="the run's creation, Unix time: time 0 of the axis")
    finished_at: float | None = Field(None, description="Unix time, None while not over")
    end_s: float = Field(description="length of the axis: the run's end, or now while live")
    live: bool = Field(
        description="the run goes on (running, waiting, observing, rolling back): poll again"
    )
    started_by: str | None = Field(None, description="who started it, when recorded")
    error: str | None = None
    hint: str | None = None
    steps: list[TimelineStep]
    waits: list[TimelineWait]
    approvals: list[TimelineApproval]
    write_unavailability: list[WriteWindow]
    point_of_no_return: PointOfNoReturn | None
    rollback: TimelineRollback | None
    undos: list[TimelineUndo]
    events: list[TimelineEvent]
    measurements: list[TimelineMeasurement]


def timeline_for(journal: Journal, run_id: int, *, status: str | None = None) -> Timeline:
    """The timeline of ``run_id`` read from ``journal`` (StateError for an unknown run).

    ``status`` is the effective status when the caller knows it (``interrupted``:
    computing it needs the engine, which this layer sits below)."""
    run = journal.get_run(run_id)
    return build_timeline(
        run,
        journal.steps(run_id),
        journal.events(run_id=run_id, limit=100_000),
        journal.measurements(run_id),
        status=status,
        now=time.time(),
    )


def build_timeline(
    run: RunRecord,
    steps: list[StepRecord],
    events: list[dict[str, Any]],
    measurements: list[dict[str, Any]],
    *,
    status: str | None = None,
    now: float | None = None,
) -> Timeline:
    """The timeline of one run from what the journal holds of it (pure: same inputs,
    same timeline; ``now`` only sets the axis of a run that is not over)."""
    t0 = run.created_at
    live = run.finished_at is None and (status or run.status) in LIVE
    rel = _Clock(t0)

    specs = run.plan.get("steps", [])
    failed_at = {e["step"]: e["ts"] for e in events if e["kind"] == "step.failed"}
    pairs = _pair(specs, steps)
    bars = [_step(i, spec, rec, failed_at, rel) for i, (spec, rec) in enumerate(pairs)]
    approvals = _approvals(events, rel)
    waits = _waits(specs, bars, events, approvals, rel)
    windows = _write_windows(run.values, measurements, rel)
    undos = _undos(events, rel)
    rollback = _rollback(run.values, events, rel)
    ponr = _point_of_no_return(specs, steps, bars)
    timeline_events = [
        TimelineEvent(
            id=e["id"],
            at_s=rel(e["ts"]),
            kind=e["kind"],
            step=e.get("step"),
            message=e["message"],
        )
        for e in events
    ]
    known = [0.0]
    for bar in bars:
        known += [t for t in (bar.start_s, bar.end_s) if t is not None]
    known += [e.at_s for e in timeline_events]
    known += [w.end_s for w in windows if w.end_s is not None]
    if run.finished_at is not None:
        end = rel(run.finished_at)
    elif live and now is not None:
        end = max(round(now - t0, 3), *known)
    else:
        end = max(rel(run.updated_at), *known)
    return Timeline(
        run_id=run.id,
        service=run.service,
        kind=run.kind,
        status=status or run.status,
        from_site=run.plan.get("from_site"),
        to_site=run.plan.get("to_site"),
        t0=t0,
        finished_at=run.finished_at,
        end_s=end,
        live=live,
        started_by=run.options.get("started_by") or run.options.get("by"),
        error=run.error,
        hint=run.hint,
        steps=bars,
        waits=waits,
        approvals=approvals,
        write_unavailability=windows,
        point_of_no_return=ponr,
        rollback=rollback,
        undos=undos,
        events=timeline_events,
        measurements=[
            TimelineMeasurement(
                name=m["name"],
                value=m["value"],
                unit=m.get("unit"),
                step=m.get("step"),
                note=m.get("note"),
            )
            for m in measurements
        ],
    )


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class _Clock:
    """Unix times -> seconds since the run's creation (to the millisecond)."""

    t0: float

    def __call__(self, ts: float) -> float:
        return round(ts - self.t0, 3)

    def maybe(self, ts: float | None) -> float | None:
        return None if ts is None else self(ts)


def _pair(
    specs: list[dict[str, Any]], records: list[StepRecord]
) -> list[tuple[dict[str, Any], StepRecord | None]]:
    """Each plan step with its record (a plan longer than its records: none yet)."""
    by_idx = {r.idx: r for r in records}
    return [(spec, by_idx.get(i)) for i, spec in enumerate(specs)]


def _step(
    index: int,
    spec: dict[str, Any],
    record: StepRecord | None,
    failed_at: dict[str | None, float],
    rel: _Clock,
) -> TimelineStep:
    start = rel.maybe(record.started_at) if record else None
    end = rel.maybe(record.finished_at) if record else None
    if record is not None and end is None and record.status == "failed":
        end = rel.maybe(failed_at.get(spec["id"]))
    return TimelineStep(
        index=index,
        id=spec["id"],
        title=spec.get("title", spec["id"]),
        kind="gate" if spec.get("kind") == "gate" else "action",
        action=spec.get("action", ""),
        component=spec.get("component"),
        site=spec.get("site"),
        status=record.status if record else "pending",
        start_s=start,
        end_s=end,
        duration_s=None if start is None or end is None else round(end - start, 3),
        attempts=record.attempts if record else 0,
        point_of_no_return=bool(spec.get("point_of_no_return")),
        undo=record.undo_status if record else None,
        error=record.error if record else None,
    )


def _approvals(events: list[dict[str, Any]], rel: _Clock) -> list[TimelineApproval]:
    found = []
    for e in events:
        if e["kind"] != "gate.approved" or e.get("step") is None:
            continue
        data = e.get("data") if isinstance(e.get("data"), dict) else {}
        by = data.get("by") if data else None
        if by is None:
            match = _APPROVED_BY.search(e["message"])
            by = match.group("by") if match else None
        found.append(TimelineApproval(step=e["step"], by=by, at_s=rel(e["ts"])))
    return found


def _waits(
    specs: list[dict[str, Any]],
    bars: list[TimelineStep],
    events: list[dict[str, Any]],
    approvals: list[TimelineApproval],
    rel: _Clock,
) -> list[TimelineWait]:
    """Approval waits (from ``gate.waiting`` to ``gate.approved``) and gate steps."""
    waits: list[TimelineWait] = []
    approved = {a.step: a for a in approvals}
    for e in events:
        if e["kind"] != "gate.waiting" or e.get("step") is None:
            continue
        approval = approved.get(e["step"])
        waits.append(
            TimelineWait(
                step=e["step"],
                kind="approval",
                start_s=rel(e["ts"]),
                end_s=approval.at_s if approval else None,
                by=approval.by if approval else None,
                question=e["message"],
            )
        )
    asked = {w.step for w in waits}
    for spec, bar in zip(specs, bars, strict=True):
        action = str(spec.get("action", ""))
        if bar.kind != "gate" or bar.start_s is None or spec["id"] in asked:
            continue
        kind = action.removeprefix("gate.") if action.startswith("gate.") else action
        waits.append(TimelineWait(step=spec["id"], kind=kind, start_s=bar.start_s, end_s=bar.end_s))
    return sorted(waits, key=lambda w: w.start_s)


def _write_windows(
    values: dict[str, Any], measurements: list[dict[str, Any]], rel: _Clock
) -> list[WriteWindow]:
    """Pair each ``writes_stopped_at.SITE`` with the first resume or restore after it."""
    stops = sorted(
        (float(v), k.split(".", 1)[1])
        for k, v in values.items()
        if k.startswith("writes_stopped_at.") and v is not None
    )
    ends = sorted(
        (float(v), k.split(".", 1)[1], k.startswith("writes_restored_at."))
        for k, v in values.items()
        if (k.startswith("writes_resumed_at.") or k.startswith("writes_restored_at."))
        and v is not None
    )
    measured = [m for m in measurements if m["name"] in UNAVAILABILITY_MEASUREMENTS]
    windows = []
    for at, site in stops:
        end = next((e for e in ends if e[0] >= at), None)
        if end is not None:
            ends.remove(end)
        match = None
        if end is not None and measured:
            length = end[0] - at
            match = min(measured, key=lambda m: abs((m["value"] or 0.0) - length))
            measured.remove(match)
        windows.append(
            WriteWindow(
                stopped_site=site,
                resumed_site=end[1] if end else None,
                start_s=rel(at),
                end_s=rel(end[0]) if end else None,
                measured_s=match["value"] if match else None,
                measurement=match["name"] if match else None,
                rollback=bool(end and end[2]),
            )
        )
    return windows


def _point_of_no_return(
    specs: list[dict[str, Any]], records: list[StepRecord], bars: list[TimelineStep]
) -> PointOfNoReturn | None:
    """The plan's first point-of-no-return step, and whether the run passed it (the
    rule the engine applies: it applied, or is done, and was not undone)."""
    by_idx = {r.idx: r for r in records}
    for i, spec in enumerate(specs):
        if not spec.get("point_of_no_return"):
            continue
        record = by_idx.get(i)
        passed = bool(
            record is not None
            and (record.attempts > 0 or record.status in DONE_STEPS)
            and record.undo_status != UndoStatus.UNDONE
        )
        return PointOfNoReturn(
            step=spec["id"],
            title=spec.get("title", spec["id"]),
            passed=passed,
            at_s=bars[i].start_s if passed else None,
        )
    return None


def _undos(events: list[dict[str, Any]], rel: _Clock) -> list[TimelineUndo]:
    undos: list[TimelineUndo] = []
    last: float | None = None
    for e in events:
        if e["kind"] == "run.rolling_back":
            last = rel(e["ts"])
        elif e["kind"] in ("step.undone", "step.undo_failed") and e.get("step") is not None:
            end = rel(e["ts"])
            undos.append(
                TimelineUndo(
                    step=e["step"],
                    status="undone" if e["kind"] == "step.undone" else "undo-failed",
                    start_s=last if last is not None else end,
                    end_s=end,
                    message=e["message"],
                )
            )
            last = end
    return undos


def _rollback(
    values: dict[str, Any], events: list[dict[str, Any]], rel: _Clock
) -> TimelineRollback | None:
    rollback = values.get("rollback")
    if not isinstance(rollback, dict):
        return None
    began = next((e["ts"] for e in events if e["kind"] == "run.rolling_back"), None)
    return TimelineRollback(
        reason=rollback.get("reason"), ending=rollback.get("ending"), start_s=rel.maybe(began)
    )
