"""The store interface (store/base.py) and its SQLite backend: every concern of the
interface is implemented with the same signature, and the writes the interface calls
atomic stay atomic under concurrent writers (each thread has its own connection, as
the monitor's threads and the run processes do)."""

from __future__ import annotations

import ast
import inspect
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import failback
from failback.errors import StateError
from failback.store import (
    EventStore,
    HealthStore,
    Journal,
    RunStore,
    ServiceStateStore,
    SqliteStore,
    Store,
)

SRC = Path(failback.__file__).parent
PLAN = {"steps": [{"id": "fence"}, {"id": "promote"}, {"id": "route"}]}


def new_run(store: SqliteStore, service: str = "app") -> int:
    return store.create_run(
        service=service, kind="failback", plan=PLAN, topology_path="t.yaml",
        topology_text="", options={},
    )  # fmt: skip


def together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released at the same instant; return what
    each returned or raised."""
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def body(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("concern", [RunStore, EventStore, ServiceStateStore, HealthStore])
def test_the_sqlite_backend_has_every_method_of_each_concern_with_its_signature(
    concern: type,
) -> None:
    methods = [
        name
        for name, member in vars(concern).items()
        if callable(member) and not name.startswith("_")
    ]
    assert methods
    for name in methods:
        assert inspect.signature(getattr(SqliteStore, name)) == inspect.signature(
            getattr(concern, name)
        ), name


def test_the_journal_of_a_state_directory_is_the_store_in_its_usual_file(
    tmp_path: Path,
) -> None:
    store = Journal(tmp_path / "state")
    assert isinstance(store, Store)
    assert store.path == tmp_path / "state" / "journal.sqlite3"
    store.close()
    # a state directory written before the store package: rows found by their columns
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        db.execute(
            "INSERT INTO runs (service, kind, status, created_at, updated_at, plan_json,"
            " topology_path, topology_text, values_json) VALUES"
            " ('app', 'failback', 'succeeded', 1, 2, '{\"steps\": []}', 't.yaml', '',"
            ' \'{"final_lsn": "0/3000000"}\')'
        )
        db.execute(
            "INSERT INTO service_state (service, active_site, data_json, updated_at)"
            " VALUES ('app', 'b', '{\"needs_resync\": [\"a\"]}', 3)"
        )
    store = Journal(tmp_path / "state")
    assert store.get_run(1).values == {"final_lsn": "0/3000000"}
    assert store.service_state("app") == {"needs_resync": ["a"], "active_site": "b",
                                          "updated_at": 3}  # fmt: skip
    store.close()


def test_concurrent_service_data_writers_keep_every_key(tmp_path: Path) -> None:
    """Four writers, each its own connection, set 40 keys each: a read-modify-write that
    let another writer in between its read and its write would lose keys."""
    state = tmp_path / "state"
    Journal(state).set_service_state("app", "a")

    def write(i: int) -> None:
        store = Journal(state)
        try:
            for n in range(40):
                store.update_service_data("app", "z", **{f"w{i}_{n}": n})
        finally:
            store.close()

    assert together(4, write) == [None] * 4
    store = Journal(state)
    data = store.service_state("app")
    assert data is not None
    assert data["active_site"] == "a"  # update_service_data never moves the active site
    assert {k for k in data if k.startswith("w")} == {
        f"w{i}_{n}" for i in range(4) for n in range(40)
    }
    store.close()


def test_mark_in_sync_and_a_concurrent_writer_both_take_effect(tmp_path: Path) -> None:
    state = tmp_path / "state"
    sites = [f"s{n}" for n in range(30)]
    Journal(state).set_service_state("app", "a", needs_resync=sites)

    def work(i: int) -> list[bool]:
        store = Journal(state)
        try:
            if i == 0:
                return [store.mark_in_sync("app", site) for site in sites]
            for n in range(30):
                store.update_service_data("app", "z", **{f"k{n}": n})
            return []
        finally:
            store.close()

    marked, written = together(2, work)
    assert marked == [True] * 30, marked
    assert written == []
    store = Journal(state)
    data = store.service_state("app")
    assert data is not None
    assert data["needs_resync"] == []
    assert all(data[f"k{n}"] == n for n in range(30))
    store.close()


def test_two_runs_created_at_once_for_one_service_one_wins(tmp_path: Path) -> None:
    """The lock is checked and taken in the transaction that creates the run: every
    loser gets the StateError naming the holder, never a half-created run."""
    state = tmp_path / "state"
    Journal(state).close()

    def create(i: int) -> int:
        store = Journal(state)
        try:
            return new_run(store)
        finally:
            store.close()

    results = together(4, create)
    winners = [r for r in results if isinstance(r, int)]
    losers = [r for r in results if not isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, StateError) for r in losers), results
    assert all(f"locked by run {winners[0]}" in str(r) for r in losers)
    store = Journal(state)
    assert store.lock_holder("app") == winners[0]
    assert [r.id for r in store.list_runs()] == winners
    store.close()


def test_an_illegal_run_transition_changes_nothing(tmp_path: Path) -> None:
    store = Journal(tmp_path / "state")
    run_id = new_run(store)
    store.set_run_status(run_id, "running")
    store.set_run_status(run_id, "succeeded", finished=True)
    before = store.get_run(run_id)
    with pytest.raises(StateError, match="cannot go from succeeded to running"):
        store.set_run_status(run_id, "running", error="late", pid=4242)
    assert store.get_run(run_id) == before
    with pytest.raises(StateError, match="cannot start rolling back"):
        store.begin_rollback(run_id, reason="late", upto=2, ending="rolled-back", failed_idx=2)
    assert store.get_run(run_id) == before
    assert [s.status for s in store.steps(run_id)] == ["pending"] * 3  # the step not failed
    store.close()


def test_a_switch_back_that_fails_half_way_records_nothing(tmp_path: Path) -> None:
    store = Journal(tmp_path / "state")
    run_id = new_run(store)
    store.set_run_status(run_id, "running")
    store.set_value(run_id, "abort_requested", "ops")
    before = store.get_run(run_id)
    with pytest.raises(KeyError):  # the second appended step has no id
        store.record_revert(run_id, 2, "error rate", [{"id": "route-back"}, {}])
    assert store.get_run(run_id) == before
    assert [s.step_id for s in store.steps(run_id)] == ["fence", "promote", "route"]
    assert store.steps(run_id)[2].status == "pending"
    store.close()


@pytest.mark.parametrize("run_id", [0, -1, 2**63 - 1, 2**63, 2**80])
def test_an_id_no_run_can_have_is_no_run(tmp_path: Path, run_id: int) -> None:
    store = Journal(tmp_path / "state")
    new_run(store)
    with pytest.raises(StateError, match=f"no run {run_id} in") as info:
        store.get_run(run_id)
    assert info.value.hint == "run ids here go from 1 to 1; `failback runs` lists them"
    store.close()


def test_saving_health_replaces_the_whole_set(tmp_path: Path) -> None:
    store = Journal(tmp_path / "state")
    store.save_health("app", {"pg-a": {"ok": True}, "pg-b": {"ok": False}})
    store.save_health("app", {"pg-a": {"ok": False}})
    health = store.health("app")
    assert list(health) == ["pg-a"]
    assert health["pg-a"]["ok"] is False
    assert "saved_at" in health["pg-a"]
    store.close()


def imported_modules(package: Path) -> dict[str, set[str]]:
    """Every module imported by each file under ``package`` (absolute imports)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        found[str(path.relative_to(SRC))] = names
    return found


def test_the_store_sits_below_the_engine_and_drivers_never_reach_it() -> None:
    allowed = ("failback.store", "failback.model", "failback.errors")
    for path, names in imported_modules(SRC / "store").items():
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name.startswith(allowed), (path, name)
    for path, names in imported_modules(SRC / "drivers").items():
        assert not any(
            n.startswith(("failback.store", "failback.engine.journal")) for n in names
        ), path
