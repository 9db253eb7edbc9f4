"""``build_timeline`` is pure: journal records in, a timeline out (issue 17, item 3).

The records here are written by hand in the shape the store returns, for the cases a
quick real run does not produce: two write-unavailability windows in one run (a switch
back measures its own), one ended by a rollback, a window still open, a live axis.
Real runs are in tests/integration/test_run_timeline.py and test_pg_report.py.
"""

from __future__ import annotations

from typing import Any

from failback.report.timeline import build_timeline
from failback.store import RunRecord, StepRecord

T0 = 1_000.0


def run(
    values: dict[str, Any], *, status: str = "succeeded", finished: float | None = 20.0
) -> RunRecord:
    steps = [
        {"id": "pause", "title": "pause", "action": "pgbouncer.pause"},
        {"id": "promote", "title": "promote", "action": "postgres.promote",
         "point_of_no_return": True},
        {"id": "resume", "title": "resume", "action": "pgbouncer.resume"},
    ]  # fmt: skip
    return RunRecord(
        id=3, service="app", kind="failback", status=status, created_at=T0,
        updated_at=T0 + 15, finished_at=None if finished is None else T0 + finished,
        plan={"from_site": "dc2", "to_site": "dc1", "steps": steps}, topology_path="t.yaml",
        topology_text="", options={"by": "monitor"}, values=values, error=None, hint=None,
        pid=None, report=None,
    )  # fmt: skip


def record(idx: int, step_id: str, start: float | None, end: float | None, **kw: Any) -> StepRecord:
    return StepRecord(
        run_id=3, idx=idx, step_id=step_id, status=kw.pop("status", "done"),
        attempts=kw.pop("attempts", 1), started_at=None if start is None else T0 + start,
        finished_at=None if end is None else T0 + end, **kw,
    )  # fmt: skip


def event(eid: int, at: float, kind: str, step: str | None = None, **data: Any) -> dict[str, Any]:
    return {"id": eid, "run_id": 3, "service": "app", "ts": T0 + at, "kind": kind,
            "step": step, "message": f"{kind} message", "data": data or None}  # fmt: skip


def measured(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "value": value, "unit": "s", "step": "resume", "note": None}


def test_each_stop_pairs_with_the_first_resume_after_it_and_its_own_measurement() -> None:
    values = {
        "writes_stopped_at.dc2": T0 + 5.0,
        "writes_resumed_at.dc1": T0 + 6.5,
        "writes_stopped_at.dc1": T0 + 10.0,  # the observation window switched back
        "writes_resumed_at.dc2": T0 + 10.4,
    }
    measurements = [
        measured("write_unavailability_s", 1.5),
        measured("switch_back_write_unavailability_s", 0.4),
    ]
    steps = [
        record(0, "pause", 5, 5.1),
        record(1, "promote", 6, 6.2),
        record(2, "resume", 6.3, 6.5),
    ]
    tl = build_timeline(run(values), steps, [], measurements)
    first, second = tl.write_unavailability
    assert (first.stopped_site, first.resumed_site, first.start_s, first.end_s) == (
        "dc2", "dc1", 5.0, 6.5,
    )  # fmt: skip
    assert (first.measured_s, first.measurement) == (1.5, "write_unavailability_s")
    assert (second.stopped_site, second.resumed_site, second.start_s, second.end_s) == (
        "dc1", "dc2", 10.0, 10.4,
    )  # fmt: skip
    assert (second.measured_s, second.measurement) == (0.4, "switch_back_write_unavailability_s")
    assert tl.started_by == "monitor" and tl.end_s == 20.0 and not tl.live
    assert tl.point_of_no_return is not None and tl.point_of_no_return.at_s == 6.0


def test_a_rollback_ends_the_window_and_undos_follow_each_other() -> None:
    values = {
        "writes_stopped_at.dc2": T0 + 5.0,
        "writes_restored_at.dc2": T0 + 9.0,
        "rollback": {"reason": "promote failed", "upto": 1, "ending": "rolled-back"},
    }
    steps = [
        record(0, "pause", 5, 5.1, undo_status="undone"),
        record(1, "promote", 6, 7, status="failed", error="boom", undo_status="undone"),
        record(2, "resume", None, None, status="pending", attempts=0),
    ]
    events = [
        event(1, 7.0, "step.failed", "promote"),
        event(2, 7.1, "run.rolling_back"),
        event(3, 8.0, "step.undone", "promote"),
        event(4, 9.0, "step.undone", "pause"),
    ]
    tl = build_timeline(run(values, status="rolled-back"), steps, events, [
        measured("write_unavailability_s", 4.0)])  # fmt: skip
    (window,) = tl.write_unavailability
    assert window.rollback and window.end_s == 9.0 and window.measured_s == 4.0
    assert [(u.step, u.start_s, u.end_s) for u in tl.undos] == [
        ("promote", 7.1, 8.0), ("pause", 8.0, 9.0),
    ]  # fmt: skip
    assert tl.rollback is not None and tl.rollback.start_s == 7.1
    assert tl.point_of_no_return is not None and not tl.point_of_no_return.passed  # undone
    assert tl.steps[2].start_s is None and tl.steps[2].status == "pending"


def test_a_running_run_is_live_and_its_open_window_has_no_end() -> None:
    values = {"writes_stopped_at.dc2": T0 + 5.0}
    steps = [record(0, "pause", 5, 5.1), record(1, "promote", 6, None, status="applying")]
    tl = build_timeline(run(values, status="running", finished=None), steps, [], [], now=T0 + 12)
    assert tl.live and tl.end_s == 12.0
    (window,) = tl.write_unavailability
    assert window.end_s is None and window.measured_s is None
    assert tl.steps[1].end_s is None and tl.steps[1].duration_s is None
    # the effective status wins: a run whose process died is not live
    dead = build_timeline(run(values, status="running", finished=None), steps, [], [],
                          status="interrupted", now=T0 + 12)  # fmt: skip
    assert not dead.live and dead.status == "interrupted" and dead.end_s == 15.0


def test_approval_waits_name_who_approved_from_the_event_or_its_message() -> None:
    steps = [record(0, "pause", 1, 9, status="done")]
    events = [
        event(1, 1.0, "gate.waiting", "pause"),
        {**event(2, 9.0, "gate.approved", "pause"), "message": "pause approved by alice"},
    ]
    tl = build_timeline(run({}), steps, events, [])
    (wait,) = tl.waits
    assert (wait.kind, wait.start_s, wait.end_s, wait.by) == ("approval", 1.0, 9.0, "alice")
    events[1]["data"] = {"by": "bob"}
    assert build_timeline(run({}), steps, events, []).approvals[0].by == "bob"
