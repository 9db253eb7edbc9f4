"""The run state machine (engine/states.py) as the journal enforces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from failback.errors import StateError
from failback.model.states import RUN_TRANSITIONS, TERMINAL, RunStatus, transition_allowed
from failback.store import Journal, open_journal


def new_run(tmp_path: Path) -> tuple[Journal, int]:
    journal = open_journal(tmp_path / "state")
    plan = {"steps": [{"id": "a"}, {"id": "b"}]}
    run_id = journal.create_run(
        service="app", kind="failback", plan=plan, topology_path="t.yaml",
        topology_text="", options={},
    )  # fmt: skip
    return journal, run_id


def test_every_status_has_a_row_and_terminal_states_lead_nowhere() -> None:
    assert set(RUN_TRANSITIONS) == set(RunStatus)
    for status in TERMINAL:
        assert not RUN_TRANSITIONS[status]


def test_an_undo_can_never_turn_into_a_forward_run() -> None:
    assert not transition_allowed("rolling-back", "running")
    assert not transition_allowed("rolling-back", "succeeded")
    assert not transition_allowed("rolling-back", "waiting-approval")
    assert transition_allowed("rolling-back", "rolling-back")


def test_the_journal_refuses_a_transition_outside_the_table(tmp_path: Path) -> None:
    journal, run_id = new_run(tmp_path)
    journal.set_run_status(run_id, "running")
    journal.begin_rollback(run_id, reason="x", upto=1, ending="rolled-back", failed_idx=1)
    assert journal.get_run(run_id).status == "rolling-back"
    with pytest.raises(StateError, match="cannot go from rolling-back to running"):
        journal.set_run_status(run_id, "running")
    assert journal.get_run(run_id).status == "rolling-back"
    journal.set_run_status(run_id, "rolled-back", finished=True)
    with pytest.raises(StateError):
        journal.begin_rollback(run_id, reason="y", upto=1, ending="aborted")
    with pytest.raises(StateError):
        journal.set_run_status(run_id, "running")


def test_begin_rollback_is_one_transaction(tmp_path: Path) -> None:
    journal, run_id = new_run(tmp_path)
    journal.set_run_status(run_id, "running")
    journal.begin_rollback(run_id, reason="boom", upto=1, ending="rolled-back", failed_idx=1)
    run = journal.get_run(run_id)
    assert run.values["rollback"]["reason"] == "boom"
    assert run.values["rollback"]["ending"] == "rolled-back"
    assert [s.status for s in journal.steps(run_id)] == ["pending", "failed"]
