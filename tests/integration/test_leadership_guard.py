"""The executor's fencing guard (issue 14): before anything is applied or undone, the
process must prove it still leads; a deposed one applies nothing more and leaves the
run as it stands, and the next leader continues it with no effect applied twice.

Driven by the command driver (no server): every action appends one line to an effects
file, so the test counts each effect. The guard is a function the test controls, the
way the monitor passes its etcd proof (``Leadership.prove``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from failback.config import load_topology
from failback.engine.executor import Executor
from failback.engine.starter import make_plan
from failback.errors import LeadershipLost
from failback.store import open_journal
from tests.integration.test_engine_crash import FAILBACK_EFFECTS, effects, write_topology


def guard_refusing_after(allowed: int, asked: list[str]) -> Callable[[str], None]:
    """A leader that proves itself ``allowed`` times, then is deposed for good."""

    def guard(what: str) -> None:
        asked.append(what)
        if len(asked) > allowed:
            raise LeadershipLost(f"{what} not applied: node a is no longer the leader")

    return guard


def run_failback(tmp: Path, guard: Callable[[str], None] | None) -> tuple[int, str]:
    topology = load_topology(tmp / "failback.yaml")
    journal = open_journal(topology.state_dir)
    try:
        executor = Executor(journal, guard=guard)
        plan = make_plan("failback", "app", topology, journal)
        run_id = executor.create(topology, plan)
        return run_id, executor.execute(run_id).status
    finally:
        journal.close()


def fail_over(tmp: Path) -> None:
    topology = load_topology(tmp / "failback.yaml")
    journal = open_journal(topology.state_dir)
    try:
        executor = Executor(journal)
        plan = make_plan("failover", "app", topology, journal, planned=True)
        assert executor.execute(executor.create(topology, plan)).status == "succeeded"
    finally:
        journal.close()


PROOFS_BEFORE_EFFECTS = 3
"""The run's own proof, then the precheck and stability gates: no effect of their own."""


@pytest.mark.parametrize("allowed", [1, 4, 6])
def test_a_deposed_leader_applies_nothing_more_and_the_next_one_finishes(
    tmp_path: Path, allowed: int
) -> None:
    write_topology(tmp_path, slow=0)
    fail_over(tmp_path)
    before = len(effects(tmp_path))
    asked: list[str] = []
    # the first proof is for the run itself, then one per step applied
    run_id, status = run_failback(tmp_path, guard_refusing_after(allowed, asked))
    assert status == "interrupted"
    assert len(asked) == allowed + 1  # nothing was attempted after the refused proof
    applied = effects(tmp_path)[before:]
    assert applied == FAILBACK_EFFECTS[: max(allowed - PROOFS_BEFORE_EFFECTS, 0)]
    journal = open_journal(tmp_path / ".failback")
    try:
        run = journal.get_run(run_id)
        assert run.status in ("pending", "running")  # neither failed nor turned backward
        steps = journal.steps(run_id)
        assert all(s.undo_status is None for s in steps)
        assert [s.status for s in steps].count("applying") == 0  # refused before applying
        deposed = [e for e in journal.events(run_id=run_id) if e["kind"] == "run.deposed"]
        assert len(deposed) == 1 and "no longer the leader" in deposed[0]["message"]
        # the next leader continues it, in its direction, each effect exactly once
        outcome = Executor(journal, guard=lambda what: None).execute(run_id)
    finally:
        journal.close()
    assert outcome.status == "succeeded"
    assert effects(tmp_path)[before:] == FAILBACK_EFFECTS


def test_a_deposed_leader_does_not_undo_either(tmp_path: Path) -> None:
    """A failure before the point of no return turns the run backward; a leader deposed
    at that moment must not undo (the undo changes the service as much as a step)."""
    write_topology(tmp_path, slow=0, fail_action="fence@dc2")
    fail_over(tmp_path)
    before = len(effects(tmp_path))
    asked: list[str] = []
    # proven: the run, two gates, sync, the failing fence; refused: the first undo
    run_id, status = run_failback(tmp_path, guard_refusing_after(PROOFS_BEFORE_EFFECTS + 2, asked))
    assert asked[-1].startswith("undo of step")
    assert status == "interrupted"
    assert [e for e in effects(tmp_path)[before:] if e.startswith("undo-")] == []
    journal = open_journal(tmp_path / ".failback")
    try:
        assert journal.get_run(run_id).status == "rolling-back"
        outcome = Executor(journal, guard=lambda what: None).execute(run_id)
    finally:
        journal.close()
    assert outcome.status == "rolled-back"
    undone = [e for e in effects(tmp_path)[before:] if e.startswith("undo-")]
    assert undone == ["undo-fence@dc2", "undo-sync@dc1"]
